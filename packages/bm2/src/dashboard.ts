/** `Dashboard`: the daemon's web dashboard and Prometheus endpoint. */

import { ProcessManager } from "./process-manager";
import type { DashboardInfo, DashboardOptions } from "./types";

/** Starts, stops and shows the web dashboard of a `ProcessManager`'s daemon. */
export class Dashboard {
  private readonly pm: ProcessManager;

  constructor(pm: ProcessManager = new ProcessManager()) {
    this.pm = pm;
  }

  /**
   * Starts the dashboard (again, with these options, when it runs): `start({port, metricsPort,
   * host})`, or `start(port, metricsPort)` as in BM2's spec. Gives its address (with the token).
   */
  start(opts: DashboardOptions | number = {}, metricsPort?: number): Promise<DashboardInfo> {
    const o: DashboardOptions = typeof opts === "number" ? { port: opts, metricsPort } : opts;
    const body: Record<string, unknown> = {};
    if (o.port !== undefined) body.port = o.port;
    if (o.metricsPort !== undefined) body.metrics_port = o.metricsPort;
    if (o.host !== undefined) body.host = o.host;
    if (o.publicRead !== undefined) body.public_read = o.publicRead;
    if (o.maxSessions !== undefined) body.max_sessions = o.maxSessions;
    return this.pm.transport.json("POST", "/v1/dashboard/start", body);
  }

  /** Stops it; true when it was running. */
  stop(): Promise<boolean> {
    return this.pm.transport.json("POST", "/v1/dashboard/stop");
  }

  /** The running dashboard, or null. */
  status(): Promise<DashboardInfo | null> {
    return this.pm.transport.json("GET", "/v1/dashboard");
  }
}
