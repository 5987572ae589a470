require("../probe.js");
