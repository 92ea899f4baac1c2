// The data plane's keep-alive connections to one model server. A connection whose answer (whole
// or a stream) ended cleanly comes back here for the next request; an idle one is dropped after
// 4 s (below uvicorn's 5 s, so none is reused just as the server closes it), and at once when
// the server closes it, writes on it or it fails. While a request holds a connection, it has no
// idle limit: a stream may last as long as it runs.
import { connect, type Socket } from 'node:net';

export class ConnectionPool {
  private readonly idle = new Set<Socket>();
  private closed = false;

  constructor(private readonly port: number, private readonly idleMs: number) {}

  /** A connection to send one request on: an idle one, else a new one. Until it is given back,
   * its failures are its request's to handle. */
  take(): Socket {
    for (const socket of this.idle) {
      this.idle.delete(socket);
      socket.setTimeout(0);
      return socket;
    }
    return this.open();
  }

  /** Gives back a connection whose answer was read to its end and which the server keeps
   * open; paused, with none of its request's listeners left. */
  give(socket: Socket): void {
    if (this.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    this.idle.add(socket);
    socket.setTimeout(this.idleMs);
    // Flowing while idle, so that the server's close is seen at once, not by the next request.
    socket.resume();
  }

  /** Drops the idle connections; a connection given back later is closed. */
  close(): void {
    this.closed = true;
    for (const socket of this.idle) socket.destroy();
    this.idle.clear();
  }

  private open(): Socket {
    const socket = connect({ host: '127.0.0.1', port: this.port, noDelay: true });
    // While idle, anything that happens on a connection ends it, and takes it out of the idle set
    // at once (its 'close' comes later in the loop: a request arriving in between must not get
    // it). While in use, its request has listeners of its own for the same events.
    const dropIfIdle = (): void => {
      if (this.idle.delete(socket)) socket.destroy();
    };
    socket.on('data', dropIfIdle);
    socket.on('end', dropIfIdle);
    socket.on('timeout', dropIfIdle);
    socket.on('error', dropIfIdle);
    socket.on('close', () => this.idle.delete(socket));
    return socket;
  }
}
