// The upload page's script. Resumable mode (the default) uses tus-js-client: pause, resume, and
// continue after a dropped connection or a reload (tus-js-client remembers the upload's URL in
// localStorage, keyed by the file's name, type, size and date). The other mode is one multipart
// POST with XHR, for its progress events; it can only be cancelled.
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('upload-form');
  const fileInput = $('file');
  const drop = $('drop');
  const tokenInput = $('token');
  const resumableInput = $('resumable');
  tokenInput.value = sessionStorage.getItem('relay-token') || '';

  const ENDPOINT = '/v1/uploads';
  const mib = (bytes) => (bytes / 1048576).toFixed(1) + ' MiB';
  const show = (id, visible) => ($(id).hidden = !visible);
  /** #status is a live region: setting the text it already has would say it again. */
  function setStatus(text, done = false) {
    const status = $('status');
    status.classList.toggle('done', done);
    if (status.textContent !== text) status.textContent = text;
  }
  const authHeaders = (token) => (token ? { Authorization: 'Bearer ' + token } : {});

  // Said once, when the relay runs on its emulator: nothing uploaded here reaches api.video.
  fetch('/v1/info')
    .then((r) => (r.ok ? r.json() : {}))
    .then((info) => show('upstream-note', info.upstream === 'emulator'))
    .catch(() => {});

  // The drop zone's text is the file input's label: it names the file and still says what to do.
  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    const name = document.createElement('strong');
    name.textContent = file ? file.name : 'Choose a video';
    $('drop-text').replaceChildren(
      name,
      file ? ` · ${mib(file.size)}. Choose another or drop it here.` : ' or drop it here',
    );
    void lookForPreviousUpload();
  });
  resumableInput.addEventListener('change', () => void lookForPreviousUpload());
  ['dragover', 'dragenter'].forEach((e) =>
    drop.addEventListener(e, (ev) => (ev.preventDefault(), drop.classList.add('over'))),
  );
  ['dragleave', 'drop'].forEach((e) =>
    drop.addEventListener(e, () => drop.classList.remove('over')),
  );
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    fileInput.files = ev.dataTransfer.files;
    fileInput.dispatchEvent(new Event('change'));
  });

  function tusOptions(file, token) {
    const metadata = { filename: file.name };
    if ($('title').value) metadata.title = $('title').value;
    return {
      endpoint: ENDPOINT,
      chunkSize: 8 * 1048576,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      removeFingerprintOnSuccess: true,
      headers: authHeaders(token),
      metadata,
    };
  }

  /** The upload tus-js-client remembers for this file, if any: offered before the user clicks. */
  async function lookForPreviousUpload() {
    const file = fileInput.files[0];
    let previous = [];
    if (file && resumableInput.checked && window.tus) {
      previous = await new tus.Upload(file, tusOptions(file, '')).findPreviousUploads();
    }
    show('resume-note', previous.length > 0);
    $('upload').textContent = previous.length > 0 ? 'Continue upload' : 'Upload';
  }

  /** `loaded` of `total`, and with a `speed` (bytes/s) the speed and the time left at it. */
  function showProgress(loaded, total, speed) {
    const percent = total > 0 ? Math.min(100, (100 * loaded) / total) : 100;
    const bar = $('bar');
    bar.setAttribute('aria-valuenow', percent.toFixed(0));
    bar.setAttribute('aria-valuetext', `${percent.toFixed(0)} %, ${mib(loaded)} of ${mib(total)}`);
    $('fill').style.width = percent.toFixed(1) + '%';
    $('percent').textContent = percent.toFixed(0) + ' %';
    $('sent').textContent = `${mib(loaded)} of ${mib(total)}`;
    $('speed').textContent = speed > 0 ? mib(speed) + '/s' : '';
    $('eta').textContent =
      speed > 0 && loaded < total ? timeLeft((total - loaded) / speed) + ' left' : '';
  }

  /** Progress, a speed over the last few seconds, and the time left at that speed. */
  function progressMeter(total) {
    let samples = [];
    let last = 0;
    return {
      update(loaded) {
        const now = performance.now();
        samples.push({ now, loaded });
        while (samples.length > 2 && now - samples[0].now > 5000) samples.shift();
        const first = samples[0];
        const seconds = (now - first.now) / 1000;
        last = loaded;
        showProgress(loaded, total, seconds >= 0.5 ? (loaded - first.loaded) / seconds : 0);
      },
      // Nothing moves (paused, stopped, retrying): a speed or a time left would be stale, and the
      // samples from before the stop would drag the speed down once bytes move again.
      still() {
        samples = [];
        showProgress(last, total, 0);
      },
    };
  }

  function timeLeft(seconds) {
    if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  // The relay's detail for a refused token tells an API client which header to send; the person at
  // this page has a token field instead.
  const TOKEN_REFUSED = {
    upload_token_unknown: 'The relay does not know the token in the Access token field.',
    upload_token_expired: 'The token in the Access token field has expired.',
    upload_token_used_up:
      'The token in the Access token field has been used as often as it allows.',
    upload_token_revoked: 'The token in the Access token field was revoked.',
  };
  function detailForThisPage(code, detail, token) {
    if (code === 'unauthorized') {
      return token
        ? 'The relay did not accept the token in the Access token field. Check it, then upload again.'
        : 'This relay needs an access token. Paste it in the Access token field, then upload again.';
    }
    if (TOKEN_REFUSED[code]) return `${TOKEN_REFUSED[code]} Paste a new one, then upload again.`;
    return detail;
  }

  /** A problem+json body made readable: its title and detail, never the raw text. */
  function problemOf(status, text, token) {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (body && typeof body.title === 'string') {
      return {
        title: body.title,
        detail: detailForThisPage(
          body.code,
          typeof body.detail === 'string' ? body.detail : '',
          token,
        ),
        meta: [body.code, body.requestId && 'request ' + body.requestId]
          .filter(Boolean)
          .join(' · '),
      };
    }
    return {
      title: `The relay answered ${status}`,
      detail: 'The answer was not the relay’s own: a proxy in between may have refused the upload.',
      meta: '',
    };
  }

  // #error is an alert: it says the problem, so #status is emptied rather than saying it too.
  function showError(problem) {
    setStatus('');
    $('error-title').textContent = problem.title;
    $('error-detail').textContent = problem.detail;
    $('error-meta').textContent = problem.meta;
    show('error', true);
  }

  const NETWORK_PROBLEM = {
    title: 'The connection to the relay failed',
    detail: 'Check your network, then upload again.',
    meta: '',
  };
  const NETWORK_STOPPED = {
    title: 'The connection to the relay failed',
    detail: 'Check your network, then press Resume: the upload continues from what the relay has.',
    meta: '',
  };
  const NOT_FETCHED = {
    title: 'The video is uploaded, but the page could not get its id',
    detail:
      'The relay has the whole file. Check your network; the video is in your api.video project.',
    meta: '',
  };

  let current; // { pause(), resume(), cancel(), canPause, paused }

  function finished() {
    current = undefined;
    $('upload').disabled = false;
    show('resume-note', false);
    $('upload').textContent = 'Upload';
    $('pause').hidden = true;
    $('cancel').hidden = true;
    // Nothing moves any more: no speed, no time left.
    $('speed').textContent = '';
    $('eta').textContent = '';
  }

  function succeeded(video, size) {
    finished();
    showProgress(size, size, 0);
    // Said once, here: #result holds the id and the link, not a second "uploaded".
    setStatus('Uploaded. api.video is encoding it now.', true);
    $('video-id').textContent = video.videoId;
    const player = (video.assets && video.assets.player) || '';
    $('player').href = player;
    $('player').textContent = player;
    show('result', true);
  }

  function failed(problem) {
    finished();
    showError(problem);
  }

  $('pause').addEventListener('click', () => {
    if (!current || !current.canPause) return;
    if (current.paused) current.resume();
    else current.pause();
  });
  $('cancel').addEventListener('click', () => current && current.cancel());

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = fileInput.files[0];
    if (!file || current) return;
    // The token as sent: what the person types during the upload does not change what was refused.
    const token = tokenInput.value;
    sessionStorage.setItem('relay-token', token);
    $('upload').disabled = true;
    show('result', false);
    show('error', false);
    setStatus('');
    show('progress', true);
    $('cancel').hidden = false;
    $('pause').hidden = !resumableInput.checked;
    $('pause').textContent = 'Pause';
    showProgress(0, file.size, 0);
    if (resumableInput.checked) void uploadResumably(file, token);
    else uploadOnce(file, token);
  });

  function uploadOnce(file, token) {
    const data = new FormData();
    if ($('title').value) data.append('title', $('title').value); // text fields before the file
    data.append('file', file);
    const meter = progressMeter(file.size);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/videos');
    Object.entries(authHeaders(token)).forEach(([name, value]) =>
      xhr.setRequestHeader(name, value),
    );
    xhr.upload.addEventListener('progress', (e) => e.lengthComputable && meter.update(e.loaded));
    // Every byte is sent; the relay answers once api.video has the last part.
    xhr.upload.addEventListener('load', () => {
      meter.update(file.size);
      setStatus('Finishing: api.video is receiving the last part…');
    });
    xhr.addEventListener('load', () => {
      if (xhr.status === 201) return succeeded(JSON.parse(xhr.responseText), file.size);
      failed(problemOf(xhr.status, xhr.responseText, token));
    });
    xhr.addEventListener('error', () => failed(NETWORK_PROBLEM));
    xhr.addEventListener('abort', () => {
      finished();
      setStatus('Cancelled. The relay deletes the video it had started.');
    });
    current = { canPause: false, cancel: () => xhr.abort() };
    setStatus('Uploading…');
    xhr.send(data);
  }

  async function uploadResumably(file, token) {
    const meter = progressMeter(file.size);
    const headers = authHeaders(token);
    const control = { canPause: true, paused: false, cancelling: false };
    // After a resume, a retry or a reload the status says so until bytes move again, then says
    // "Uploading…". tus-js-client reports the offset it starts from before it sends: bytes move
    // once a report goes past that first one. `undefined`: moving; `null`: no report yet.
    let waitingFrom;
    const waitForBytes = () => {
      waitingFrom = null;
      meter.still();
    };
    const upload = new tus.Upload(file, {
      ...tusOptions(file, token),
      onProgress: (sent, total) => {
        // A report from the request a pause or a cancel just aborted: nothing moves any more.
        if (control.paused || control.cancelling) return;
        meter.update(sent);
        if (sent === total) {
          waitingFrom = undefined;
          return setStatus('Finishing: api.video is receiving the last part…');
        }
        if (waitingFrom === null) waitingFrom = sent;
        else if (waitingFrom !== undefined && sent > waitingFrom) {
          waitingFrom = undefined;
          setStatus('Uploading…');
        }
      },
      onShouldRetry: (err, attempt, options) => {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        const retry = !status || status === 409 || status === 423 || status >= 500;
        if (retry && attempt < options.retryDelays.length) {
          waitForBytes();
          setStatus(
            status
              ? `The relay could not take the upload just now: trying again (${attempt + 1})…`
              : `The connection dropped: trying again (${attempt + 1})…`,
          );
        }
        return retry;
      },
      onError: (err) => {
        const response = err.originalResponse;
        if (!response) {
          // Nothing answered: keep the upload so Resume can continue it.
          control.paused = true;
          $('pause').textContent = 'Resume';
          meter.still();
          showError(NETWORK_STOPPED);
          return;
        }
        failed(problemOf(response.getStatus(), response.getBody(), token));
      },
      // The status still says "Finishing…" while the page asks for the video's id: a status for
      // that short step would be one more announcement before "Uploaded".
      onSuccess: async () => {
        try {
          const answer = await fetch(upload.url, { headers });
          const text = await answer.text();
          if (!answer.ok) return failed(problemOf(answer.status, text, token));
          const state = JSON.parse(text);
          succeeded(state.video || { videoId: state.videoId }, file.size);
        } catch {
          failed(NOT_FETCHED);
        }
      },
    });
    Object.assign(control, {
      pause: () => {
        control.paused = true;
        $('pause').textContent = 'Resume';
        meter.still();
        void upload.abort().then(() => {
          // Unless Resume or Cancel was pressed before the abort settled.
          if (control.paused && !control.cancelling && current === control)
            setStatus(`Paused at ${$('percent').textContent}.`);
        });
      },
      resume: () => {
        control.paused = false;
        $('pause').textContent = 'Pause';
        show('error', false);
        waitForBytes();
        setStatus('Resuming…');
        upload.start();
      },
      cancel: () => {
        control.cancelling = true;
        meter.still();
        setStatus('Cancelling…');
        upload.abort(true).then(
          () => {
            if (current === control) finished();
            setStatus('Cancelled. The relay deleted what it had received.');
          },
          () => {
            if (current === control) finished();
            setStatus('Cancelled. What the relay received is deleted when the upload expires.');
          },
        );
      },
    });
    current = control;
    const previous = await upload.findPreviousUploads();
    if (previous.length > 0) {
      upload.resumeFromPreviousUpload(previous[0]);
      waitForBytes();
      await sayWhatTheRelayHas(previous[0].uploadUrl, headers, file.size, meter);
    } else {
      setStatus('Uploading…');
    }
    upload.start();
  }

  /** The relay's own offset (HEAD), so the page claims only what the relay acknowledged. */
  async function sayWhatTheRelayHas(url, headers, size, meter) {
    try {
      const answer = await fetch(url, {
        method: 'HEAD',
        headers: { ...headers, 'Tus-Resumable': '1.0.0' },
      });
      if (answer.status === 404 || answer.status === 410) {
        // Expired or terminated: tus-js-client starts a new upload.
        return setStatus('The earlier upload is gone: starting again.');
      }
      const offset = Number(answer.headers.get('Upload-Offset'));
      if (answer.ok && Number.isFinite(offset)) {
        meter.update(offset);
        const percent = Math.floor((100 * offset) / size);
        return setStatus(`Resuming: the relay already has ${mib(offset)} (${percent} %).`);
      }
    } catch {
      /* tus-js-client asks again and reports what fails */
    }
    setStatus('Resuming…');
  }
})();
