/** The engine's version, shared by every daemon and ctrctl. */
export const VERSION = '0.1.0';
/** The gRPC API generation (proto packages are v1). */
export const API_VERSION = 'v1';
