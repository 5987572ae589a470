module.exports = {
  apps: [
    {
      name: "npm-app",
      script: "npm",
      args: "start",
      node_args: "--no-warnings",
    },
  ],
};
