// Every error a client sees has the OpenAI shape {"error":{message,type,param,code}} so SDKs show it.
import { log } from './log.js';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** Seconds after which a retry may succeed, sent as `Retry-After` (a router in front waits
     * that long, or tries another host); null: no retry of the same request will help. */
    readonly retryAfterSecs: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const invalidJson = (detail: string): ApiError =>
  new ApiError(400, `invalid JSON body: ${detail}`, 'invalid_request_error', 'invalid_json');

export const missingModel = (): ApiError =>
  new ApiError(400, 'missing string field: model', 'invalid_request_error', 'invalid_request', 'model');

export const modelNotFound = (model: string): ApiError =>
  new ApiError(404, `model not found: ${model}`, 'invalid_request_error', 'model_not_found', 'model');

export const routeNotFound = (method: string, path: string): ApiError =>
  new ApiError(404, `no route for ${method} ${path}`, 'invalid_request_error', 'not_found');

export const bodyTooLarge = (limit: string): ApiError =>
  new ApiError(413, `request body larger than ${limit}`, 'invalid_request_error', 'payload_too_large');

/** `retryAfterSecs`: when the model may be ready (crash-loop backoff, a wait that timed out);
 * omitted when a retry cannot help (shutting down, removed from the configuration). */
export const modelNotReady = (reason: string, retryAfterSecs: number | null = null): ApiError =>
  new ApiError(503, `model not ready: ${reason}`, 'server_error', 'model_not_ready', null, retryAfterSecs);

export const upstreamTimeout = (): ApiError =>
  new ApiError(504, 'upstream request timed out', 'server_error', 'upstream_timeout');

export const upstreamUnreachable = (detail: string): ApiError =>
  new ApiError(502, `upstream unreachable: ${detail}`, 'server_error', 'upstream_unreachable');

export const invalidUpstreamResponse = (detail: string): ApiError =>
  new ApiError(502, `invalid upstream response: ${detail}`, 'server_error', 'invalid_upstream_response');

export const invalidApiKey = (which: 'API key' | 'admin API key', missing: boolean): ApiError =>
  new ApiError(
    401,
    missing ? `missing ${which}: send the header Authorization: Bearer <key>` : `invalid ${which}`,
    'invalid_request_error',
    'invalid_api_key',
  );

export const controlForbidden = (why: string): ApiError =>
  new ApiError(403, `control API disabled: ${why}; set --admin-api-key (or SGLANGMUX_ADMIN_API_KEY) to use it`, 'invalid_request_error', 'forbidden');

export const invalidParameter = (param: string, detail: string): ApiError =>
  new ApiError(400, `invalid parameter ${param}: ${detail}`, 'invalid_request_error', 'invalid_request', param);

/** The one log line of a request that ended in an error (keys never appear in it: only the
 * method, the path without its query, and the error's own message). */
export function logApiError(method: string, path: string, err: ApiError): void {
  const line = `${method} ${path} -> ${err.status}: ${err.message}`;
  if (err.status >= 500) log.warn(line);
  else log.info(line);
}
