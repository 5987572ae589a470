// The app of the PM2-file corpus: writes what it sees (argv, execArgv, cwd, env) to
// $BM2_TEST_VIEWS/<pid>.json, listens on $PORT when set (so cluster mode has something to
// balance), and stays up.
const fs = require("fs");
const path = require("path");
const dir = process.env.BM2_TEST_VIEWS;
if (dir) {
  const view = {
    argv: process.argv,
    execArgv: process.execArgv,
    cwd: process.cwd(),
    env: process.env,
  };
  const file = path.join(dir, `${process.pid}.json`);
  fs.writeFileSync(file + ".tmp", JSON.stringify(view));
  fs.renameSync(file + ".tmp", file);
}
if (process.env.PORT) {
  require("http")
    .createServer((req, res) => res.end("ok"))
    .listen(Number(process.env.PORT));
}
setInterval(() => {}, 1000);
