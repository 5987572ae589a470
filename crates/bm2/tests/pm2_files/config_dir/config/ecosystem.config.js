// Kept in config/ and started from the project root: `pm2 start config/ecosystem.config.js`.
require("./load-env");
console.log("loading the ecosystem config");

module.exports = {
  apps: [
    {
      name: "web",
      script: "./server.js",
      instances: 2,
      env: {
        NODE_ENV: "development",
        FEATURES: { search: true, beta: false },
        HOSTS: ["a.example", "b.example"],
      },
      env_production: {
        NODE_ENV: "production",
      },
    },
  ],
  deploy: {
    production: {
      user: "deploy",
      host: "prod.example",
      ref: "origin/main",
      repo: "git@example.com:app.git",
      path: "/srv/app",
      env: { DEPLOYED: "yes", NODE_ENV: "from-deploy" },
    },
  },
};
