import { createRoot } from 'react-dom/client';
import { App } from './App';
import { metrics } from './metrics';
import './styles.css';

window.radris = { metrics, engineId: 'radris' };
const root = document.getElementById('root');
if (root) createRoot(root).render(<App />);
