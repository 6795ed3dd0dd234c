// The upload page's script: a multipart upload with XHR (for its progress events), or a
// resumable one with tus-js-client, which picks up from the relay's offset after a dropped connection.
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $('upload-form');
  const fileInput = $('file');
  const drop = $('drop');
  const tokenInput = $('token');
  tokenInput.value = sessionStorage.getItem('relay-token') || '';

  const mib = (bytes) => (bytes / 1048576).toFixed(1) + ' MiB';
  const show = (id, visible) => ($(id).hidden = !visible);

  fileInput.addEventListener('change', () => {
    const file = fileInput.files[0];
    $('drop-text').textContent = file ? `${file.name} · ${mib(file.size)}` : 'Choose a video';
  });
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

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const file = fileInput.files[0];
    if (!file) return;
    sessionStorage.setItem('relay-token', tokenInput.value);
    const token = tokenInput.value;
    const headers = token ? { Authorization: 'Bearer ' + token } : {};

    const started = performance.now();
    const progress = (loaded, total) => {
      const seconds = (performance.now() - started) / 1000;
      const percent = Math.min(100, (100 * loaded) / total);
      $('fill').style.width = percent.toFixed(1) + '%';
      $('percent').textContent = percent.toFixed(0) + ' %';
      $('speed').textContent = seconds > 0.2 ? mib(loaded / seconds) + '/s' : '';
      $('sent').textContent = `${mib(loaded)} of ${mib(total)}`;
    };
    const done = (video) => {
      $('upload').disabled = false;
      $('fill').style.width = '100%';
      $('percent').textContent = '100 %';
      $('video-id').textContent = video.videoId;
      const player = (video.assets && video.assets.player) || '';
      $('player').href = player;
      $('player').textContent = player;
      show('result', true);
    };
    const failed = (message) => {
      $('upload').disabled = false;
      $('error').textContent = message;
      show('error', true);
    };

    $('upload').disabled = true;
    show('result', false);
    show('error', false);
    show('progress', true);
    if ($('resumable').checked) uploadResumably(file, headers, progress, done, failed);
    else uploadOnce(file, headers, progress, done, failed);
  });

  function uploadOnce(file, headers, progress, done, failed) {
    const data = new FormData();
    if ($('title').value) data.append('title', $('title').value); // text fields before the file
    data.append('file', file);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/videos');
    Object.entries(headers).forEach(([name, value]) => xhr.setRequestHeader(name, value));
    xhr.upload.addEventListener(
      'progress',
      (e) => e.lengthComputable && progress(e.loaded, e.total),
    );
    xhr.addEventListener('load', () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status === 201) return done(body);
      const code = body.code ? ', ' + body.code : '';
      failed(`${body.title || 'Upload failed'} (${xhr.status}${code}). ${body.detail || ''}`);
    });
    xhr.addEventListener('error', () =>
      failed('The connection failed. Check your network and try again.'),
    );
    xhr.send(data);
  }

  function uploadResumably(file, headers, progress, done, failed) {
    const metadata = { filename: file.name };
    if ($('title').value) metadata.title = $('title').value;
    const upload = new tus.Upload(file, {
      endpoint: '/v1/uploads',
      chunkSize: 8 * 1048576,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      headers,
      metadata,
      onProgress: progress,
      onError: (err) => failed(`The resumable upload failed: ${err.message}`),
      onSuccess: async () => {
        const state = await fetch(upload.url, { headers }).then((r) => r.json());
        done(state.video || { videoId: state.videoId });
      },
    });
    upload.start();
  }
})();
