import { defineConfig } from "vite";

// The bundle is served by meshplane serve under /console (see meshplane/console/pages.py).
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "../meshplane/console/static",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
  },
});
