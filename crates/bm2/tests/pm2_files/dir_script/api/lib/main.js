require("../../../probe.js");
