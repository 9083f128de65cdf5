import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The app is served by `radris serve` from web/dist; `npm run dev` proxies the APIs to a
// running server on 127.0.0.1:8080 (same origin for the session cookie).
const api = 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 8000,
  },
  worker: { format: 'es' },
  optimizeDeps: {
    // the image loader's codecs are wasm modules loaded by URL: let Vite leave them alone
    exclude: ['@cornerstonejs/dicom-image-loader', '@cornerstonejs/metadata'],
    include: [
      '@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs',
      '@cornerstonejs/codec-charls/decodewasmjs',
      '@cornerstonejs/codec-openjpeg/decodewasmjs',
      'dicom-parser',
    ],
  },
  server: {
    proxy: {
      '/api': api,
      '/dicom-web': api,
      '/wado': api,
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
