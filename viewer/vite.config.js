// Builds the three pages into the Python package (src/tessel/viewer/static), served at /viewer/.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

const root = import.meta.dirname;

export default defineConfig({
  base: '/viewer/',
  build: {
    outDir: resolve(root, '../src/tessel/viewer/static'),
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: {
        index: resolve(root, 'index.html'),
        stack: resolve(root, 'stack.html'),
        slide: resolve(root, 'slide.html'),
      },
    },
  },
  // vtk.js (through xmlbuilder2) extends Node's EventEmitter: the `events` package is its browser twin.
  resolve: { alias: { events: 'events/' } },
  worker: { format: 'es' },
  optimizeDeps: {
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: ['dicom-parser'],
  },
  server: {
    // `npm run dev` proxies the API and DICOMweb to a local `tessel serve`.
    proxy: {
      '/datastore': 'http://127.0.0.1:8080',
      '/viewer/api': 'http://127.0.0.1:8080',
    },
  },
});
