// The demo page's script: a multipart upload with XHR, for its progress events.
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
    const data = new FormData();
    if ($('title').value) data.append('title', $('title').value); // text fields before the file
    data.append('file', file);

    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/videos');
    if (tokenInput.value) xhr.setRequestHeader('Authorization', 'Bearer ' + tokenInput.value);
    const started = performance.now();
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      const seconds = (performance.now() - started) / 1000;
      const percent = Math.min(100, (100 * e.loaded) / e.total);
      $('fill').style.width = percent.toFixed(1) + '%';
      $('percent').textContent = percent.toFixed(0) + ' %';
      $('speed').textContent = seconds > 0.2 ? mib(e.loaded / seconds) + '/s' : '';
      $('sent').textContent = `${mib(e.loaded)} of ${mib(e.total)}`;
    });
    xhr.addEventListener('load', () => {
      $('upload').disabled = false;
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status === 201) {
        $('fill').style.width = '100%';
        $('video-id').textContent = body.videoId;
        const player = (body.assets && body.assets.player) || '';
        $('player').href = player;
        $('player').textContent = player;
        show('result', true);
      } else {
        $('error').textContent =
          `${body.title || 'Upload failed'} (${xhr.status}${body.code ? ', ' + body.code : ''}). ${body.detail || ''}`;
        show('error', true);
      }
    });
    xhr.addEventListener('error', () => {
      $('upload').disabled = false;
      $('error').textContent = 'The connection failed. Check your network and try again.';
      show('error', true);
    });
    $('upload').disabled = true;
    show('result', false);
    show('error', false);
    show('progress', true);
    xhr.send(data);
  });
})();
