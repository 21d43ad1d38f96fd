// Builds the static bundle into dist/ (served at / by web/serve.py behind the gateway).
import { defineConfig } from "vite";

export default defineConfig({
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
});
