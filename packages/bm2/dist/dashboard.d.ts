/** `Dashboard`: the daemon's web dashboard and Prometheus endpoint. */
import { ProcessManager } from "./process-manager";
import type { DashboardInfo, DashboardOptions } from "./types";
/** Starts, stops and shows the web dashboard of a `ProcessManager`'s daemon. */
export declare class Dashboard {
    private readonly pm;
    constructor(pm?: ProcessManager);
    /**
     * Starts the dashboard (again, with these options, when it runs): `start({port, metricsPort,
     * host})`, or `start(port, metricsPort)` as in BM2's spec. Gives its address (with the token).
     */
    start(opts?: DashboardOptions | number, metricsPort?: number): Promise<DashboardInfo>;
    /** Stops it; true when it was running. */
    stop(): Promise<boolean>;
    /** The running dashboard, or null. */
    status(): Promise<DashboardInfo | null>;
}
