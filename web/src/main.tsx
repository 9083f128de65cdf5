import { createRoot } from 'react-dom/client';
import { App } from './App';
import { metrics } from './metrics';
import './styles.css';

window.radris = { metrics, engineId: 'radris' };
// Image loading runs in promises inside Cornerstone that nobody awaits (prefetch, volume
// streaming); their failures are shown in the viewport they concern (IMAGE_LOAD_ERROR). A codec
// that throws (a WebAssembly exception is a bare number) must not become an uncaught error.
window.addEventListener('unhandledrejection', (e) => {
  console.warn('a background task failed:', e.reason);
  e.preventDefault();
});
const root = document.getElementById('root');
if (root) createRoot(root).render(<App />);
