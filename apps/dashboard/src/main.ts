/**
 * The dashboard: hash routes (`#/`, `#/runs/:id`, `#/workers`), one live stream for every
 * view, and the keys panel. No framework: views build DOM and patch it on live messages.
 */
import type { LiveMessage } from '@archipelago/protocol';
import { AUTH_REQUIRED, keys } from './api.js';
import { Live, type LiveState } from './live.js';
import { tickRelativeTimes } from './ui.js';
import { overview } from './views/overview.js';
import { runPage } from './views/run.js';
import type { View } from './views/view.js';
import { workersPage } from './views/workers.js';
import './style.css';

const main = document.getElementById('main')!;
const liveEl = document.getElementById('live')!;
const keysPanel = document.getElementById('keys') as HTMLDetailsElement;
const keysForm = document.getElementById('keys-form') as HTMLFormElement;
const keysMessage = document.getElementById('keys-message')!;
const viewKeyInput = document.getElementById('view-key') as HTMLInputElement;
const adminKeyInput = document.getElementById('admin-key') as HTMLInputElement;

let view: View | null = null;

function route(): void {
  view?.destroy();
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  document.title = 'Archipelago';
  let section = 'runs';
  if (parts[0] === 'runs' && parts[1]) view = runPage(main, parts[1]);
  else if (parts[0] === 'workers') {
    view = workersPage(main);
    section = 'workers';
  } else view = overview(main);
  for (const a of document.querySelectorAll<HTMLAnchorElement>('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  void view.refresh();
}

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  locked: 'view key needed',
};

const live = new Live({
  onMessage(m: LiveMessage) {
    // After (re)connecting, fetch everything: messages may have been missed meanwhile.
    if (m.type === 'hello') void view?.refresh();
    else if (m.type !== 'ping') view?.onLive(m);
  },
  onState(state) {
    liveEl.dataset.state = state;
    liveEl.textContent = LIVE_TEXT[state];
  },
});

function fillKeyInputs(): void {
  viewKeyInput.value = keys.view;
  adminKeyInput.value = keys.admin;
}

keysForm.addEventListener('submit', (e) => {
  e.preventDefault();
  keys.set(viewKeyInput.value.trim(), adminKeyInput.value.trim());
});
document.getElementById('keys-forget')!.addEventListener('click', () => {
  keys.set('', '');
  fillKeyInputs();
});
window.addEventListener('keys-changed', () => {
  keysMessage.hidden = true;
  keysPanel.open = false;
  live.start();
  route();
});
let asked = false;
window.addEventListener(AUTH_REQUIRED, () => {
  if (asked && keysPanel.open) return;
  asked = true;
  keysMessage.textContent = keys.view
    ? 'The view key was not accepted. Enter the one the organiser gave you.'
    : 'This coordinator needs a view key to show its data.';
  keysMessage.hidden = false;
  keysPanel.open = true;
  viewKeyInput.focus();
});

document.querySelector('[data-skip]')?.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', route);
setInterval(() => tickRelativeTimes(), 1000);
fillKeyInputs();
route();
live.start();
