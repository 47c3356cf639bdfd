// VideoWindow is a remote peer's video in a small window that can be moved
// (drag the title bar, or focus it and use the arrow keys) and resized (the
// corner handle, or Shift+arrow keys). It stays on the screen when the
// screen gets smaller. Positions are set through
// element.style, which the page's Content-Security-Policy allows (it forbids
// only inline style attributes and <style> blocks in the HTML).

const step = 16;
const minW = 160;
const minH = 120;

export class VideoWindow {
  constructor(parent, peer, index) {
    this.peer = peer;
    const name = peer.user || peer.peer;
    this.root = document.createElement('div');
    this.root.className = 'vwin';
    this.root.dataset.peer = peer.peer;
    this.root.setAttribute('role', 'group');
    this.root.setAttribute('aria-label', `Video from ${name}`);

    const bar = document.createElement('div');
    bar.className = 'vwin-bar';
    bar.tabIndex = 0;
    bar.setAttribute('aria-label', `Move the video from ${name}: arrow keys move, Shift+arrow keys resize`);
    const title = document.createElement('span');
    title.className = 'vwin-title';
    title.textContent = name;
    if (peer.role === 'recorder') title.textContent += ' (recorder)';
    this.mute = document.createElement('button');
    this.mute.type = 'button';
    this.mute.textContent = 'Mute';
    this.mute.setAttribute('aria-pressed', 'false');
    this.mute.setAttribute('aria-label', `Mute ${name}`);
    this.mute.addEventListener('click', () => this.toggleMute());
    bar.append(title, this.mute);

    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.dataset.peer = peer.peer;
    this.video.setAttribute('aria-label', `Camera of ${name}`);

    this.root.append(bar, this.video);
    parent.append(this.root);
    // New windows open at the bottom right, cascading, where they cover
    // the least of the page.
    const off = 28 * (index % 8);
    this.place(window.innerWidth - 340 - off, window.innerHeight - 270 - off);
    this.size(320, 240);
    this.drag(bar);
    bar.addEventListener('keydown', (e) => this.onKey(e));
    // A phone turned upright, or a browser window made smaller, would
    // leave the window where only its corner, or nothing, shows.
    this.onResize = () => this.fit();
    window.addEventListener('resize', this.onResize);
  }

  show(stream) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.video.play().catch(() => {}); // autoplay policy: the user can press play
  }

  toggleMute() {
    this.video.muted = !this.video.muted;
    this.mute.textContent = this.video.muted ? 'Unmute' : 'Mute';
    this.mute.setAttribute('aria-pressed', String(this.video.muted));
  }

  place(x, y) {
    const maxX = Math.max(0, window.innerWidth - 80);
    const maxY = Math.max(0, window.innerHeight - 40);
    this.x = Math.min(Math.max(0, x), maxX);
    this.y = Math.min(Math.max(0, y), maxY);
    this.root.style.left = this.x + 'px';
    this.root.style.top = this.y + 'px';
  }

  size(w, h) {
    this.root.style.width = Math.max(minW, Math.min(w, window.innerWidth)) + 'px';
    this.root.style.height = Math.max(minH, Math.min(h, window.innerHeight)) + 'px';
  }

  // fit shrinks the window to the screen and moves it fully onto it.
  fit() {
    const r = this.root.getBoundingClientRect();
    this.size(r.width, r.height);
    const { width, height } = this.root.getBoundingClientRect();
    this.place(Math.min(this.x, window.innerWidth - width), Math.min(this.y, window.innerHeight - height));
  }

  drag(handle) {
    handle.addEventListener('pointerdown', (e) => {
      if (e.target !== handle && e.target.className !== 'vwin-title') return;
      e.preventDefault();
      handle.setPointerCapture(e.pointerId);
      const dx = e.clientX - this.x, dy = e.clientY - this.y;
      const move = (m) => this.place(m.clientX - dx, m.clientY - dy);
      const up = () => {
        handle.removeEventListener('pointermove', move);
        handle.removeEventListener('pointerup', up);
        handle.removeEventListener('pointercancel', up);
      };
      handle.addEventListener('pointermove', move);
      handle.addEventListener('pointerup', up);
      handle.addEventListener('pointercancel', up);
      this.raise();
    });
  }

  raise() {
    VideoWindow.z = (VideoWindow.z || 10) + 1;
    this.root.style.zIndex = String(VideoWindow.z);
  }

  onKey(e) {
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[e.key];
    if (!d) return;
    e.preventDefault();
    if (e.shiftKey) {
      const r = this.root.getBoundingClientRect();
      this.size(r.width + d[0], r.height + d[1]);
    } else {
      this.place(this.x + d[0], this.y + d[1]);
    }
  }

  remove() {
    window.removeEventListener('resize', this.onResize);
    this.video.srcObject = null;
    this.root.remove();
  }
}
