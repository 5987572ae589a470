"use strict";
/** `Dashboard`: the daemon's web dashboard and Prometheus endpoint. */
Object.defineProperty(exports, "__esModule", { value: true });
exports.Dashboard = void 0;
const process_manager_1 = require("./process-manager");
/** Starts, stops and shows the web dashboard of a `ProcessManager`'s daemon. */
class Dashboard {
    pm;
    constructor(pm = new process_manager_1.ProcessManager()) {
        this.pm = pm;
    }
    /**
     * Starts the dashboard (again, with these options, when it runs): `start({port, metricsPort,
     * host})`, or `start(port, metricsPort)` as in BM2's spec. Gives its address (with the token).
     */
    start(opts = {}, metricsPort) {
        const o = typeof opts === "number" ? { port: opts, metricsPort } : opts;
        const body = {};
        if (o.port !== undefined)
            body.port = o.port;
        if (o.metricsPort !== undefined)
            body.metrics_port = o.metricsPort;
        if (o.host !== undefined)
            body.host = o.host;
        if (o.publicRead !== undefined)
            body.public_read = o.publicRead;
        if (o.maxSessions !== undefined)
            body.max_sessions = o.maxSessions;
        return this.pm.transport.json("POST", "/v1/dashboard/start", body);
    }
    /** Stops it; true when it was running. */
    stop() {
        return this.pm.transport.json("POST", "/v1/dashboard/stop");
    }
    /** The running dashboard, or null. */
    status() {
        return this.pm.transport.json("GET", "/v1/dashboard");
    }
}
exports.Dashboard = Dashboard;
