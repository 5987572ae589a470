/** bm2's JavaScript/TypeScript client: `ProcessManager`, `Dashboard`, `Bm2Error`. */
export { ProcessManager } from "./process-manager";
export type { ProcessManagerOptions, LogsOptions, DataPacket, Target } from "./process-manager";
export { Dashboard } from "./dashboard";
export { Bm2Error } from "./errors";
export type { ApiErrorBody } from "./errors";
export { EventStream } from "./events";
export type { EventsOptions } from "./events";
export type { ConnectionOptions } from "./transport";
export * from "./types";
