// A tiny HTTP server for trying bm2: `bm2 start examples/http-server.js --name hello`
const http = require("http");

const port = Number(process.env.PORT || 3000);
const server = http.createServer((req, res) => {
  res.end(`hello from pid ${process.pid} (bm2 id ${process.env.pm_id})\n`);
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${port}`);
});

// Close cleanly on the stop signal bm2 sends first (SIGINT by default).
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
