// Tritontube pages' script: upload with progress and live processing state on the index,
// the dash.js player and delete on the player page. Plain script, no build step; without
// it the form posts as before and the pages still work.
'use strict';

(function () {
  const POLL_MS = 500;
  // Waits before each new try of a resumable upload whose connection broke.
  const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10000, 20000, 30000];

  function $(id) { return document.getElementById(id); }

  function megabytes(n) { return (n / 1e6).toFixed(1) + ' MB'; }

  // The rule the web node applies: the file name without its extension, and a name that
  // can be a storage key (no '/', '\', control characters, not hidden, not too long).
  function videoIdFor(fileName) {
    const dot = fileName.lastIndexOf('.');
    const id = dot > 0 ? fileName.slice(0, dot) : fileName;
    if (!id) return { error: 'the file has no name' };
    if (id.startsWith('.')) return { error: 'a name cannot start with "."' };
    if (/[\/\\\u0000-\u001f\u007f]/.test(id)) return { error: 'a name cannot hold "/", "\\" or control characters' };
    if (new TextEncoder().encode(id).length > 255) return { error: 'the name is longer than 255 bytes' };
    return { id };
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (e) { /* not JSON */ }
    return 'the server answered ' + response.status;
  }

  const PHASES = {
    receiving: 'Receiving',
    probing: 'Checking the video',
    transcoding: 'Transcoding',
    storing: 'Storing',
    playable: 'Playable now, higher qualities coming',
    processing: 'Processing',
    ready: 'Ready',
    failed: 'Failed',
  };

  function describe(status) {
    let text = PHASES[status.phase] || status.phase;
    if (status.phase === 'transcoding' || status.phase === 'playable') text += ' (' + Math.floor(status.transcode_percent || 0) + ' % encoded)';
    if (status.phase === 'failed' && status.error) text += ': ' + status.error;
    return text;
  }

  // Polls an upload's status until it is ready or failed; `show` hears every state.
  function follow(id, show) {
    return new Promise((resolve) => {
      const url = '/api/uploads/' + encodeURIComponent(id);
      const tick = async () => {
        let status;
        try {
          const response = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store' });
          status = response.ok ? await response.json() : { phase: 'failed', error: await errorOf(response) };
        } catch (e) {
          setTimeout(tick, POLL_MS * 4);
          return;
        }
        show(status);
        if (status.phase === 'ready' || status.phase === 'failed') resolve(status);
        else setTimeout(tick, POLL_MS);
      };
      tick();
    });
  }

  function setupUpload() {
    const form = $('upload-form');
    if (!form || !window.XMLHttpRequest || !window.FormData) return;
    const box = $('upload-status');
    const bar = $('upload-progress');
    const text = $('upload-text');
    const button = form.querySelector('button[type=submit]');

    function show(phase, message, percent, isError) {
      box.hidden = false;
      box.dataset.phase = phase;
      if (percent !== undefined) bar.value = percent;
      text.textContent = message;
      text.className = isError ? 'error' : '';
      text.setAttribute('role', isError ? 'alert' : 'status');
    }

    form.addEventListener('submit', (event) => {
      const input = form.querySelector('input[type=file]');
      const file = input.files && input.files[0];
      if (!file) return;
      event.preventDefault();
      const named = videoIdFor(file.name);
      if (named.error) {
        show('failed', 'Cannot upload "' + file.name + '": ' + named.error, 0, true);
        return;
      }
      const id = named.id;
      button.disabled = true;
      show('sending', 'Uploading ' + id + '…', 0);
      if (window.tus && window.tus.isSupported) {
        sendResumable(file, id);
        return;
      }
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/upload');
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable) progressText(id, e.loaded, e.total);
      });
      xhr.addEventListener('error', () => {
        button.disabled = false;
        show('failed', 'The upload of ' + id + ' failed: the connection broke.', undefined, true);
      });
      xhr.addEventListener('load', async () => {
        if (xhr.status !== 202) {
          let message = 'the server answered ' + xhr.status;
          try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* keep */ }
          button.disabled = false;
          show('failed', 'The upload of ' + id + ' was refused: ' + message, 0, true);
          return;
        }
        await processed(id);
      });
      const data = new FormData();
      data.append('file', file, file.name);
      xhr.send(data);
    });

    function progressText(id, sent, total) {
      const percent = (100 * sent) / total;
      bar.dataset.sent = String(sent);
      show('sending', 'Uploading ' + id + ': ' + Math.floor(percent) + ' % (' + megabytes(sent) + ' of ' + megabytes(total) + ')', percent);
    }

    // The captions chosen beside the video, once it plays (the token asked for first
    // when the server wants one).
    async function sendCaptions(id) {
      const input = $('captions');
      const file = input && input.files && input.files[0];
      if (!file) return;
      const lang = ($('captions-lang').value || 'en').trim();
      const headers = { Accept: 'application/json', 'Content-Type': 'text/vtt' };
      if (form.dataset.token === 'required') {
        const token = window.prompt('Admin token (to add the captions)');
        if (!token) return;
        headers.Authorization = 'Bearer ' + token;
      }
      const note = $('captions-status');
      try {
        const response = await fetch('/api/videos/' + encodeURIComponent(id) + '/captions/' + encodeURIComponent(lang), { method: 'PUT', headers, body: file });
        // Read the answer through: left unread, leaving the page aborts it.
        if (response.ok) await response.text();
        note.textContent = response.ok ? 'Captions (' + lang + ') added.' : 'Captions not added: ' + (await errorOf(response));
        note.className = response.ok ? '' : 'error';
      } catch (e) {
        note.textContent = 'Captions not added: the connection broke.';
        note.className = 'error';
      }
    }

    // The body is in: follow the processing until the video is ready (or failed).
    async function processed(id) {
      let captionsSent = false;
      const final = await follow(id, (status) => {
        if (!captionsSent && (status.phase === 'playable' || status.phase === 'ready')) {
          captionsSent = true;
          sendCaptions(id);
        }
        const encoding = status.phase === 'transcoding' || status.phase === 'playable';
        const percent = encoding ? status.transcode_percent : (status.phase === 'ready' ? 100 : undefined);
        show(status.phase, id + ': ' + describe(status), percent, status.phase === 'failed');
        if (status.phase === 'playable') {
          const link = document.createElement('a');
          link.href = '/videos/' + encodeURIComponent(id);
          link.textContent = 'Watch it now';
          text.append(' ', link);
        }
      });
      button.disabled = false;
      if (final.phase === 'ready') {
        show('ready', id + ' is ready. ', 100);
        const link = document.createElement('a');
        link.href = '/videos/' + encodeURIComponent(id);
        link.textContent = 'Watch it';
        text.appendChild(link);
        form.reset();
        refreshList();
      }
    }

    // A resumable upload (tus): a dropped connection is retried from the offset the
    // server has, and a page loaded again resumes when the same file is chosen.
    function sendResumable(file, id) {
      const upload = new window.tus.Upload(file, {
        endpoint: '/api/tus/',
        retryDelays: RETRY_DELAYS_MS,
        metadata: { filename: file.name, filetype: file.type || 'video/mp4' },
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onProgress: (sent, total) => progressText(id, sent, total),
        onShouldRetry: (error) => {
          const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
          // A refusal stays a refusal; a broken connection, a busy server or an offset
          // that moved on (409: ask the server's offset again) is retried.
          const retry = status === 0 || status === 409 || status === 423 || status >= 500;
          if (retry) show('sending', 'Uploading ' + id + ': the connection broke, resuming…', undefined);
          return retry;
        },
        onError: (error) => {
          button.disabled = false;
          const response = error.originalResponse;
          const why = response ? (response.getBody() || '').trim() || 'the server answered ' + response.getStatus() : 'the connection broke';
          show('failed', 'The upload of ' + id + ' failed: ' + why, undefined, true);
        },
        onSuccess: () => {
          clearResumeNote();
          processed(id);
        },
      });
      upload.findPreviousUploads().then((previous) => {
        const same = previous.filter((p) => p.metadata && p.metadata.filename === file.name);
        if (same.length) upload.resumeFromPreviousUpload(same[0]);
        upload.start();
      });
    }
  }

  // After a reload: uploads tus-js-client kept for resuming are named, so the viewer can
  // choose the same file again and it goes on from where it stopped.
  function clearResumeNote() {
    const note = $('resume-note');
    if (note) note.hidden = true;
  }

  function noteUnfinishedUploads() {
    const note = $('resume-note');
    if (!note || !window.tus || !window.localStorage) return;
    const names = [];
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (!key || !key.startsWith('tus::')) continue;
      try {
        const entry = JSON.parse(localStorage.getItem(key));
        if (entry && entry.metadata && entry.metadata.filename) names.push(entry.metadata.filename);
      } catch (e) { /* not one of ours */ }
    }
    if (!names.length) return;
    note.textContent = 'Unfinished upload: ' + [...new Set(names)].join(', ') + '. Choose the same file again to resume where it stopped.';
    note.hidden = false;
  }

  // Reloads the first page's cards (only on the first page, where a new upload lands).
  async function refreshList() {
    if (location.search) return;
    try {
      const response = await fetch('/', { cache: 'no-store' });
      const html = await response.text();
      const doc = new DOMParser().parseFromString(html, 'text/html');
      const fresh = doc.getElementById('videos');
      const list = $('videos');
      if (fresh && list) {
        list.replaceWith(fresh);
        watchProcessingCards();
      }
    } catch (e) { /* the list stays as it was */ }
  }

  // Cards of videos still processing show their state live, then the ready card.
  function watchProcessingCards() {
    document.querySelectorAll('.card[data-state=processing], .card[data-state=playable]').forEach((card) => {
      if (card.dataset.followed) return;
      card.dataset.followed = '1';
      const label = card.querySelector('.state');
      let shown = card.dataset.state;
      follow(card.dataset.id, (status) => {
        if (label) label.textContent = describe(status);
        // Playable: the fresh card links to the player.
        if (status.phase === 'playable' && shown !== 'playable') {
          shown = 'playable';
          refreshList();
        }
      }).then(() => refreshList());
    });
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(s / 3600);
    const m = Math.floor(s / 60) % 60;
    const ss = String(s % 60).padStart(2, '0');
    return h ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss;
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Where the viewer was and how loud: kept per browser, the position per video.
  const store = {
    get(key) { try { return window.localStorage.getItem('tritontube:' + key); } catch (e) { return null; } },
    set(key, value) { try { window.localStorage.setItem('tritontube:' + key, value); } catch (e) { /* private mode */ } },
    remove(key) { try { window.localStorage.removeItem('tritontube:' + key); } catch (e) { /* private mode */ } },
  };

  // The storyboard's cues: [{start, end, url, x, y, w, h}], URLs resolved against it.
  async function loadStoryboard(url) {
    const response = await fetch(url);
    if (!response.ok) return [];
    const text = await response.text();
    const seconds = (t) => t.split(':').reduce((sum, part) => sum * 60 + Number(part), 0);
    const cues = [];
    text.split(/\r?\n\r?\n/).forEach((block) => {
      const lines = block.split(/\r?\n/);
      const timing = lines.findIndex((l) => l.includes('-->'));
      if (timing < 0 || !lines[timing + 1]) return;
      const [start, end] = lines[timing].split('-->').map((s) => seconds(s.trim().split(/\s/)[0]));
      const [file, fragment] = lines[timing + 1].trim().split('#xywh=');
      if (!fragment) return;
      const [x, y, w, h] = fragment.split(',').map(Number);
      cues.push({ start, end, url: new URL(file, new URL(url, location.href)).href, x, y, w, h });
    });
    return cues;
  }

  function setupPlayer() {
    const video = $('player');
    if (!video || !window.dashjs) return;
    const id = video.dataset.id || '';
    const player = window.dashjs.MediaPlayer().create();
    player.initialize(video, video.dataset.src, false);
    window.player = player;
    const quality = $('quality');
    const events = window.dashjs.MediaPlayer.events;

    // The controls: script replaces the browser's own, which stay for pages without it.
    video.controls = false;
    const box = element('div', { class: 'player', id: 'player-box' });
    video.parentNode.insertBefore(box, video);
    box.appendChild(video);
    const preview = element('div', { class: 'preview', id: 'seek-preview', 'aria-hidden': 'true' });
    const tile = element('div', { class: 'preview-tile' });
    const previewTime = element('span', { class: 'preview-time' });
    preview.append(tile, previewTime);
    preview.hidden = true;
    const bar = element('div', { class: 'controls', role: 'group', 'aria-label': 'Player controls' });
    const play = element('button', { type: 'button', id: 'play', 'aria-label': 'Play (k)' }, '▶');
    const seekWrap = element('div', { class: 'seek-wrap' });
    const seek = element('input', { type: 'range', id: 'seek', min: '0', max: '1000', step: '1', value: '0', 'aria-label': 'Seek' });
    seekWrap.append(seek, preview);
    const time = element('span', { class: 'time', id: 'time' }, '0:00 / 0:00');
    const mute = element('button', { type: 'button', id: 'mute', 'aria-label': 'Mute (m)' }, 'Mute');
    const volume = element('input', { type: 'range', id: 'volume', min: '0', max: '1', step: '0.05', value: '1', 'aria-label': 'Volume' });
    const cc = element('button', { type: 'button', id: 'cc', 'aria-pressed': 'false', 'aria-label': 'Captions (c)' }, 'CC');
    cc.hidden = video.textTracks.length === 0;
    const menuWrap = element('div', { class: 'menu-wrap' });
    const qualityButton = element('button', { type: 'button', id: 'quality-button', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-controls': 'quality-menu' }, 'Quality: Auto');
    const menu = element('ul', { id: 'quality-menu', class: 'menu', role: 'menu', 'aria-label': 'Quality' });
    menu.hidden = true;
    menuWrap.append(qualityButton, menu);
    const full = element('button', { type: 'button', id: 'fullscreen', 'aria-label': 'Full screen (f)' }, 'Full');
    bar.append(play, seekWrap, time, mute, volume, cc, menuWrap, full);
    box.appendChild(bar);
    const resume = element('div', { class: 'resume notice', id: 'resume', role: 'status' });
    const resumeText = element('span');
    const resumeYes = element('button', { type: 'button', id: 'resume-yes' }, 'Resume');
    const resumeNo = element('button', { type: 'button', id: 'resume-no', class: 'secondary' }, 'Start over');
    resume.append(resumeText, resumeYes, resumeNo);
    resume.hidden = true;
    box.after(resume);

    const toggle = () => (video.paused ? video.play().catch(() => {}) : video.pause());
    const seekBy = (delta) => {
      if (!Number.isFinite(video.duration)) return;
      video.currentTime = Math.min(video.duration, Math.max(0, video.currentTime + delta));
    };
    const toggleMute = () => { video.muted = !video.muted; };
    const toggleCaptions = () => {
      const track = video.textTracks[0];
      if (!track) return;
      track.mode = track.mode === 'showing' ? 'hidden' : 'showing';
      cc.setAttribute('aria-pressed', String(track.mode === 'showing'));
    };
    const toggleFullscreen = () => {
      if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
      else if (box.requestFullscreen) box.requestFullscreen().catch(() => {});
    };
    play.addEventListener('click', toggle);
    video.addEventListener('click', toggle);
    mute.addEventListener('click', toggleMute);
    cc.addEventListener('click', toggleCaptions);
    full.addEventListener('click', toggleFullscreen);
    volume.addEventListener('input', () => { video.volume = Number(volume.value); video.muted = video.volume === 0; });
    seek.addEventListener('input', () => {
      if (Number.isFinite(video.duration)) video.currentTime = (Number(seek.value) / 1000) * video.duration;
    });

    const showTime = () => {
      const d = Number.isFinite(video.duration) ? video.duration : 0;
      if (document.activeElement !== seek || !seek.dataset.dragging) seek.value = d ? String(Math.round((video.currentTime / d) * 1000)) : '0';
      seek.setAttribute('aria-valuetext', clock(video.currentTime) + ' of ' + clock(d));
      time.textContent = clock(video.currentTime) + ' / ' + clock(d);
    };
    video.addEventListener('timeupdate', showTime);
    video.addEventListener('durationchange', showTime);
    video.addEventListener('play', () => { play.textContent = '❚❚'; play.setAttribute('aria-label', 'Pause (k)'); });
    video.addEventListener('pause', () => { play.textContent = '▶'; play.setAttribute('aria-label', 'Play (k)'); });

    // Volume: remembered for every video.
    const savedVolume = Number(store.get('volume'));
    if (store.get('volume') !== null && savedVolume >= 0 && savedVolume <= 1) video.volume = savedVolume;
    if (store.get('muted') === '1') video.muted = true;
    const showVolume = () => {
      volume.value = String(video.muted ? 0 : video.volume);
      mute.textContent = video.muted || video.volume === 0 ? 'Unmute' : 'Mute';
      mute.setAttribute('aria-label', (video.muted ? 'Unmute' : 'Mute') + ' (m)');
      mute.setAttribute('aria-pressed', String(video.muted));
    };
    video.addEventListener('volumechange', () => {
      store.set('volume', String(video.volume));
      store.set('muted', video.muted ? '1' : '0');
      showVolume();
    });
    showVolume();

    // Position: remembered per video, offered back when the page is opened again.
    const positionKey = 'position:' + id;
    let lastSaved = 0;
    video.addEventListener('timeupdate', () => {
      if (Math.abs(video.currentTime - lastSaved) < 2) return;
      lastSaved = video.currentTime;
      store.set(positionKey, String(Math.floor(video.currentTime)));
    });
    video.addEventListener('ended', () => store.remove(positionKey));
    const saved = Number(store.get(positionKey));
    video.addEventListener('loadedmetadata', () => {
      if (saved > 3 && Number.isFinite(video.duration) && saved < video.duration - 3) {
        resumeText.textContent = 'You stopped at ' + clock(saved) + '. ';
        resume.hidden = false;
      }
    }, { once: true });
    resumeYes.addEventListener('click', () => {
      video.currentTime = saved;
      resume.hidden = true;
      video.play().catch(() => {});
      play.focus();
    });
    resumeNo.addEventListener('click', () => {
      store.remove(positionKey);
      resume.hidden = true;
      play.focus();
    });

    // Quality: Auto (by bandwidth) or one rendition chosen by height.
    let chosen = 'auto';
    const closeMenu = () => { menu.hidden = true; qualityButton.setAttribute('aria-expanded', 'false'); };
    const choose = (value) => {
      chosen = value;
      const auto = value === 'auto';
      player.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: auto } } } });
      if (!auto) player.setQualityFor('video', Number(value), true);
      menu.querySelectorAll('[role=menuitemradio]').forEach((item) => item.setAttribute('aria-checked', String(item.dataset.value === value)));
      const list = player.getBitrateInfoListFor('video') || [];
      qualityButton.textContent = 'Quality: ' + (auto ? 'Auto' : list[Number(value)].height + 'p');
      if (!auto && quality) quality.textContent = 'Switching to ' + list[Number(value)].height + 'p (chosen by you)';
      closeMenu();
      qualityButton.focus();
    };
    const buildMenu = () => {
      const list = player.getBitrateInfoListFor('video') || [];
      menu.replaceChildren();
      const items = [{ value: 'auto', label: 'Auto' }].concat(
        list.map((q, index) => ({ value: String(index), label: q.height + 'p', height: q.height }))
          .sort((a, b) => b.height - a.height),
      );
      items.forEach((item) => {
        const li = element('li', { role: 'none' });
        const button = element('button', { type: 'button', role: 'menuitemradio', 'aria-checked': String(item.value === chosen), 'data-value': item.value }, item.label);
        button.addEventListener('click', () => choose(item.value));
        li.appendChild(button);
        menu.appendChild(li);
      });
    };
    qualityButton.addEventListener('click', () => {
      const open = menu.hidden;
      menu.hidden = !open;
      qualityButton.setAttribute('aria-expanded', String(open));
      if (open) {
        const current = menu.querySelector('[aria-checked=true]') || menu.querySelector('button');
        if (current) current.focus();
      }
    });
    menu.addEventListener('keydown', (event) => {
      const items = [...menu.querySelectorAll('button')];
      const at = items.indexOf(document.activeElement);
      if (event.key === 'Escape') { closeMenu(); qualityButton.focus(); event.preventDefault(); }
      if (event.key === 'ArrowDown') { items[(at + 1) % items.length].focus(); event.preventDefault(); }
      if (event.key === 'ArrowUp') { items[(at - 1 + items.length) % items.length].focus(); event.preventDefault(); }
      event.stopPropagation();
    });

    const showQuality = () => {
      const list = player.getBitrateInfoListFor('video') || [];
      const current = list[player.getQualityFor('video')];
      if (quality && current) {
        quality.textContent = 'Playing ' + current.height + 'p (' + Math.round(current.bitrate / 1000) + ' kbit/s), ' + list.length + ' qualities, ' + (chosen === 'auto' ? 'chosen by bandwidth' : 'chosen by you');
      }
    };
    player.on(events.STREAM_INITIALIZED, () => { buildMenu(); showQuality(); });
    player.on(events.QUALITY_CHANGE_RENDERED, showQuality);

    // Seek-bar previews: the storyboard tile under the pointer (or at the slider's value
    // while it is moved with the keyboard).
    let cues = [];
    if (video.dataset.storyboard) loadStoryboard(video.dataset.storyboard).then((c) => { cues = c; }).catch(() => {});
    const previewAt = (fraction) => {
      if (!cues.length || !Number.isFinite(video.duration)) return;
      const t = Math.min(video.duration, Math.max(0, fraction * video.duration));
      const cue = cues.find((c) => t >= c.start && t < c.end) || cues[cues.length - 1];
      tile.style.width = cue.w + 'px';
      tile.style.height = cue.h + 'px';
      tile.style.backgroundImage = 'url("' + cue.url + '")';
      tile.style.backgroundPosition = '-' + cue.x + 'px -' + cue.y + 'px';
      previewTime.textContent = clock(t);
      const width = seek.getBoundingClientRect().width;
      const left = Math.min(Math.max(0, fraction * width - cue.w / 2), Math.max(0, width - cue.w));
      preview.style.left = left + 'px';
      preview.hidden = false;
      preview.dataset.time = String(t);
    };
    seek.addEventListener('pointermove', (event) => {
      const rect = seek.getBoundingClientRect();
      previewAt((event.clientX - rect.left) / rect.width);
    });
    seek.addEventListener('pointerleave', () => { preview.hidden = true; });
    seek.addEventListener('input', () => previewAt(Number(seek.value) / 1000));
    seek.addEventListener('blur', () => { preview.hidden = true; });

    // Keyboard: space or k, ← and → (5 s), f, m, c — anywhere on the page but in a text
    // field; a focused button keeps space and Enter for itself.
    document.addEventListener('keydown', (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      const target = event.target;
      const tag = target && target.tagName;
      if (tag === 'TEXTAREA' || tag === 'SELECT' || (tag === 'INPUT' && target.type !== 'range')) return;
      if (tag === 'BUTTON' && (event.key === ' ' || event.key === 'Enter')) return;
      if (target === volume && (event.key === 'ArrowLeft' || event.key === 'ArrowRight')) return;
      const actions = {
        ' ': toggle, k: toggle, K: toggle,
        ArrowLeft: () => seekBy(-5), ArrowRight: () => seekBy(5),
        f: toggleFullscreen, F: toggleFullscreen,
        m: toggleMute, M: toggleMute,
        c: toggleCaptions, C: toggleCaptions,
      };
      const action = actions[event.key];
      if (!action) return;
      event.preventDefault();
      action();
    });
    document.addEventListener('click', (event) => {
      if (!menu.hidden && !menuWrap.contains(event.target)) closeMenu();
    });
  }

  function setupDelete() {
    const button = $('delete');
    if (!button) return;
    const status = $('delete-status');
    button.addEventListener('click', async () => {
      const id = button.dataset.id;
      if (!window.confirm('Delete "' + id + '"? Every file of it is removed from every node.')) return;
      const headers = { Accept: 'application/json' };
      if (button.dataset.token === 'required') {
        const token = window.prompt('Admin token');
        if (!token) return;
        headers.Authorization = 'Bearer ' + token;
      }
      button.disabled = true;
      status.className = '';
      status.textContent = 'Deleting…';
      try {
        const response = await fetch('/api/videos/' + encodeURIComponent(id), { method: 'DELETE', headers });
        if (response.ok) {
          status.textContent = 'Deleted.';
          location.assign('/');
          return;
        }
        status.textContent = 'Not deleted: ' + (await errorOf(response));
      } catch (e) {
        status.textContent = 'Not deleted: the connection broke.';
      }
      status.className = 'error';
      button.disabled = false;
    });
  }

  function start() {
    setupUpload();
    noteUnfinishedUploads();
    watchProcessingCards();
    setupPlayer();
    setupDelete();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
