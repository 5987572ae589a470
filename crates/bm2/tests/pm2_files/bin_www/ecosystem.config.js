module.exports = {
  apps: [
    {
      name: "express-app",
      script: "./bin/www",
      node_args: "--max-old-space-size=96",
      instances: 2,
      env: { PORT_UNUSED: "1" },
    },
  ],
};
