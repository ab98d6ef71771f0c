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

  function setupPlayer() {
    const video = $('player');
    if (!video || !window.dashjs) return;
    const player = window.dashjs.MediaPlayer().create();
    player.initialize(video, video.dataset.src, false);
    window.player = player;
    const quality = $('quality');
    const events = window.dashjs.MediaPlayer.events;
    const showQuality = () => {
      const list = player.getBitrateInfoListFor('video') || [];
      const current = list[player.getQualityFor('video')];
      if (quality && current) {
        quality.textContent = 'Playing ' + current.height + 'p (' + Math.round(current.bitrate / 1000) + ' kbit/s), ' + list.length + ' qualities, chosen by bandwidth';
      }
    };
    player.on(events.STREAM_INITIALIZED, showQuality);
    player.on(events.QUALITY_CHANGE_RENDERED, showQuality);
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
