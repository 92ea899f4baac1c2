// One version number for the whole project: package.json's (the Python package reads it too).
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
