// Web page of `diffbir serve`: choose an image, set the restore options, submit a
// job, follow its progress over server-sent events and show a before/after result.
// Everything goes through the JSON API under /v1, with a Bearer token when the
// server has one.

(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'diffbir-token';
  const TERMINAL = new Set(['done', 'failed', 'cancelled']);
  const ACTIVE = new Set(['queued', 'running']);
  const PREFERRED_SAMPLER = 'edm_dpm++_3m_sde';
  const MAX_SEED = 2147483647;
  // Error `field` values that have no control of their own.
  const FIELD_CONTROL = {
    image: 'file', cleaner_tile_stride: 'cleaner_tile_size', cldm_tile_stride: 'cldm_tile_size',
  };

  const state = {
    models: null,     // the /v1/models answer, once loaded
    file: null,       // the chosen File
    inputUrl: null,   // object URL of the chosen file
    jobInput: null,   // object URL of the file the followed job was given
    resultUrl: null,  // object URL of the shown result PNG
    job: null,        // id of the followed job
    jobState: null,   // its last known state
    busy: false,      // a submission is in flight
    cancelling: null, // id of the job a DELETE was sent for
    abort: null,      // AbortController for the followed job's stream/polling
    dims: null,       // natural size of the chosen image
  };

  // ---------------------------------------------------------------- API helpers

  // sessionStorage may be unavailable (privacy settings); the page then just forgets.
  const storedToken = () => {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  };
  const storeToken = (v) => {
    try { sessionStorage.setItem(TOKEN_KEY, v); } catch (_) { /* ignored */ }
  };
  const showToken = () => { $('token-box').hidden = false; };

  // fetch() with the Bearer token; a non-2xx answer becomes a thrown Error carrying
  // the API's error code, message and field.
  async function api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    const token = $('token').value.trim();
    if (token) headers.set('Authorization', 'Bearer ' + token);
    const res = await fetch(path, { ...init, headers, cache: 'no-store' });
    if (!res.ok) throw await apiError(res);
    return res;
  }

  async function apiError(res) {
    let body = {};
    try { body = (await res.json()).error || {}; } catch (_) { /* not JSON */ }
    const err = new Error(body.message || `${res.status} ${res.statusText}`.trim());
    Object.assign(err, { status: res.status, code: body.code, field: body.field });
    if (res.status === 401) showToken();
    const retry = res.headers.get('Retry-After');
    if (res.status === 429 && retry) err.message += ` (try again in ${retry} s)`;
    return err;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ------------------------------------------------------------- status & errors

  function setStatus(text, isError = false) {
    const el = $('status');
    el.textContent = text;
    el.classList.toggle('error', isError);
  }

  // Shows an error message and marks the control named by its `field`.
  function showError(err) {
    setStatus(err.message || String(err), true);
    const id = FIELD_CONTROL[err.field] || err.field;
    const el = id ? $(id) : null;
    if (!el) return;
    el.classList.add('invalid');
    const details = el.closest('details');
    if (details) details.open = true;
  }

  function clearInvalid() {
    document.querySelectorAll('.invalid').forEach((el) => el.classList.remove('invalid'));
  }

  const fieldError = (field, message) => Object.assign(new Error(message), { field });

  function labelOf(el) {
    const label = document.querySelector(`label[for="${el.id}"]`);
    return label ? label.textContent.replace(/\s+/g, ' ').trim() : el.id;
  }

  function updateButtons() {
    const active = ACTIVE.has(state.jobState);
    $('run').disabled = !state.file || state.busy || active;
    $('cancel').disabled = !active || state.cancelling === state.job;
  }

  // ---------------------------------------------------------------------- models

  function fillSelect(select, values, preferred) {
    select.replaceChildren(...values.map((v) => new Option(v, v)));
    if (values.includes(preferred)) select.value = preferred;
  }

  async function loadModels() {
    try {
      const m = await (await api('/v1/models')).json();
      const d = m.defaults || {};
      state.models = m;
      $('task').value = m.task || '';
      $('model-info').textContent = [m.version, m.precision].filter(Boolean).join(' · ');
      const samplers = m.samplers || [];
      fillSelect($('sampler'), samplers,
        samplers.includes(PREFERRED_SAMPLER) ? PREFERRED_SAMPLER : d.sampler);
      const fixes = m.color_fixes || [];
      fillSelect($('color_fix'), fixes, d.color_fix != null ? d.color_fix : 'wavelet');
      if (d.pos_prompt != null) $('pos_prompt').value = d.pos_prompt;
      if (d.neg_prompt != null) $('neg_prompt').value = d.neg_prompt;
      if (m.token_required) showToken();
      if ($('status').classList.contains('error')) {
        setStatus(state.file ? 'Ready.' : 'Choose an image to restore.');
      }
      describeInput();
      return true;
    } catch (err) {
      if (err.status === 401) {
        setStatus('This server needs an access token: enter it above.', true);
        $('token').classList.add('invalid');
      } else {
        showError(Object.assign(err, { message: 'Could not load the model list: ' + err.message }));
      }
      return false;
    }
  }

  // ----------------------------------------------------------------------- input

  // Revokes an object URL unless the page still shows or needs it.
  function release(url) {
    if (!url) return;
    const inUse = [state.inputUrl, state.jobInput, state.resultUrl,
      $('before').getAttribute('src'), $('after').getAttribute('src')];
    if (!inUse.includes(url)) URL.revokeObjectURL(url);
  }

  function chooseFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      showError(fieldError('image', `${file.name} is not an image.`));
      return;
    }
    const old = state.inputUrl;
    state.file = file;
    state.inputUrl = URL.createObjectURL(file);
    state.dims = null;
    release(old);
    $('file').classList.remove('invalid');
    $('preview').src = state.inputUrl;
    describeInput();
    hideResult();
    if (!ACTIVE.has(state.jobState)) setStatus('Ready.');
    updateButtons();
  }

  function formatBytes(n) {
    return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`;
  }

  // Caption under the preview: name, size, and the output size at the chosen
  // upscale, with a warning when the server's limits would refuse it.
  function describeInput() {
    const f = state.file;
    if (!f) return;
    const limits = (state.models && state.models.limits) || {};
    const parts = [f.name, formatBytes(f.size)];
    let warn = limits.max_upload_bytes && f.size > limits.max_upload_bytes
      ? 'larger than the server accepts' : '';
    if (state.dims) {
      const [w, h] = state.dims;
      const u = Math.max(1, Number($('upscale').value) || 1);
      parts.push(`${w}×${h} → ${Math.round(w * u)}×${Math.round(h * u)}`);
      if (limits.max_output_pixels && w * h * u * u > limits.max_output_pixels) {
        warn = warn || 'output above the server’s pixel limit';
      }
    }
    const info = $('preview-info');
    info.textContent = parts.join(' · ') + (warn ? ` — ${warn}` : '');
    info.classList.toggle('warn', Boolean(warn));
  }

  // ------------------------------------------------------------------- options

  function seedValue() {
    const el = $('seed');
    const n = Number(el.value);
    if (el.value.trim() === '' || !Number.isInteger(n) || n < -1 || n > MAX_SEED) {
      throw fieldError('seed', `Seed must be an integer from -1 to ${MAX_SEED}.`);
    }
    if (n !== -1) return n;
    // -1: draw a seed here, so the run can be repeated with the value shown.
    const drawn = crypto.getRandomValues(new Uint32Array(1))[0] % (MAX_SEED + 1);
    el.value = String(drawn);
    return drawn;
  }

  // Every control tagged data-opt="int|float|bool|str" becomes an option under its
  // id; data-stride names a stride option sent as half the control's value.
  function collectOptions() {
    const opts = {};
    for (const el of document.querySelectorAll('[data-opt]')) {
      const kind = el.dataset.opt;
      if (kind === 'bool') {
        opts[el.id] = el.checked;
      } else if (kind === 'str') {
        opts[el.id] = el.value;
      } else {
        const n = Number(el.value);
        const bad = el.value.trim() === '' || !Number.isFinite(n) ||
          (kind === 'int' && !Number.isInteger(n));
        const what = kind === 'int' ? 'a whole number' : 'a number';
        if (bad) throw fieldError(el.id, `${labelOf(el)}: enter ${what}.`);
        opts[el.id] = n;
        if (el.dataset.stride) opts[el.dataset.stride] = Math.floor(n / 2);
      }
    }
    opts.seed = seedValue();
    return opts;
  }

  // ------------------------------------------------------------------------ jobs

  async function run() {
    if (!state.file || state.busy || ACTIVE.has(state.jobState)) return;
    clearInvalid();
    state.busy = true;
    updateButtons();
    try {
      if (!state.models && !(await loadModels())) return;
      const form = new FormData();
      form.append('image', state.file, state.file.name || 'image');
      form.append('options', JSON.stringify(collectOptions()));
      setStatus('uploading…');
      $('progress').value = 0;
      hideResult();
      const job = await (await api('/v1/jobs', { method: 'POST', body: form })).json();
      follow(job);
    } catch (err) {
      showError(err);
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  // Starts following a job: its event stream first, polling if the stream drops.
  function follow(job) {
    if (state.abort) state.abort.abort();
    const ctl = new AbortController();
    const oldInput = state.jobInput;
    Object.assign(state, { abort: ctl, job: job.id, jobState: null, cancelling: null });
    state.jobInput = state.inputUrl;
    release(oldInput);
    update(job);
    if (!TERMINAL.has(job.state)) watch(job.id, ctl.signal);
  }

  async function watch(id, signal) {
    let finished = false;
    try {
      finished = await stream(id, signal);
    } catch (_) {
      // Stream refused or dropped; polling below takes over.
    }
    if (!finished && !signal.aborted) await poll(id, signal);
  }

  // Reads the job's text/event-stream with fetch() (EventSource cannot send the
  // Authorization header). Returns true once a terminal event has been handled.
  async function stream(id, signal) {
    const res = await api(`/v1/jobs/${id}/events`, {
      signal, headers: { Accept: 'text/event-stream' },
    });
    if (!res.body) return false;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let event = '';
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || signal.aborted) return false;
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop(); // an incomplete last line waits for more bytes
        for (const line of lines) {
          if (line === '') {
            // A blank line ends an event.
            if (data.length && dispatch(event, data.join('\n'))) return true;
            event = '';
            data = [];
          } else if (!line.startsWith(':')) { // ':' starts a comment (keep-alive)
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            let val = colon < 0 ? '' : line.slice(colon + 1);
            if (val.startsWith(' ')) val = val.slice(1);
            if (field === 'event') event = val;
            else if (field === 'data') data.push(val);
          }
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Handles one SSE event; returns true when it was terminal.
  function dispatch(event, text) {
    let job;
    try { job = JSON.parse(text); } catch (_) { return false; }
    if (TERMINAL.has(event) && !TERMINAL.has(job.state)) job.state = event;
    update(job);
    return TERMINAL.has(job.state);
  }

  async function poll(id, signal) {
    let failures = 0;
    while (!signal.aborted) {
      await sleep(1000);
      if (signal.aborted) return;
      try {
        const job = await (await api(`/v1/jobs/${id}`, { signal })).json();
        failures = 0;
        update(job);
        if (TERMINAL.has(job.state)) return;
      } catch (err) {
        if (signal.aborted) return;
        // Network blips and 5xx are retried for a while; a 4xx answer is final.
        const final = err.status >= 400 && err.status < 500;
        if (final || ++failures >= 10) {
          showError(err);
          if (state.job === id) state.jobState = null;
          updateButtons();
          return;
        }
      }
    }
  }

  // Applies a job snapshot (from POST, SSE or polling) to the page.
  function update(job) {
    if (job.id && job.id !== state.job) return; // a late event of an earlier job
    if (TERMINAL.has(state.jobState)) return;   // already finished
    state.jobState = job.state;
    const bar = $('progress');
    const p = job.progress || {};
    switch (job.state) {
      case 'queued':
        bar.value = 0;
        if (state.cancelling !== job.id) {
          setStatus(job.position != null ? `queued (position ${job.position})` : 'queued');
        }
        break;
      case 'running': {
        bar.value = Math.min(1, Math.max(0, Number(p.fraction) || 0));
        let text = p.total ? `step ${p.step}/${p.total}` : 'running';
        if (p.parts > 1) text += ` (part ${p.part}/${p.parts})`;
        if (state.cancelling !== job.id) setStatus(text); // keep "cancelling…"
        break;
      }
      case 'done':
        bar.value = 1;
        showResult(job);
        break;
      case 'failed':
        showError(job.error || { message: 'failed' });
        break;
      case 'cancelled':
        setStatus('cancelled');
        break;
      default:
        setStatus(String(job.state));
    }
    updateButtons();
  }

  async function cancel() {
    const id = state.job;
    if (!id || !ACTIVE.has(state.jobState)) return;
    state.cancelling = id;
    updateButtons();
    try {
      await api(`/v1/jobs/${id}`, { method: 'DELETE' });
      // "cancelled" is shown once the job's terminal event arrives.
      if (state.job === id && ACTIVE.has(state.jobState)) setStatus('cancelling…');
    } catch (err) {
      if (state.cancelling === id) state.cancelling = null;
      showError(err);
      updateButtons();
    }
  }

  // ---------------------------------------------------------------------- result

  function loadImage(img, src) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve();
      img.onerror = () => reject(new Error('The result image could not be shown.'));
      img.src = src;
    });
  }

  async function showResult(job) {
    const path = (job.results && job.results[0]) || `/v1/jobs/${job.id}/result`;
    setStatus('downloading result…');
    try {
      const blob = await (await api(path)).blob();
      if (state.job !== job.id) return;
      const old = state.resultUrl;
      state.resultUrl = URL.createObjectURL(blob);
      await loadImage($('after'), state.resultUrl);
      const oldBefore = $('before').getAttribute('src');
      $('before').src = state.jobInput || state.inputUrl;
      release(old);
      release(oldBefore);
      const link = $('download');
      link.href = state.resultUrl;
      link.hidden = false;
      $('result-info').textContent = job.seed != null ? `seed ${job.seed}` : '';
      setClip($('slider').value);
      $('preview-box').hidden = true;
      $('result').hidden = false;
      $('slider').hidden = false;
      setStatus('done');
    } catch (err) {
      showError(err);
    }
  }

  function hideResult() {
    $('result').hidden = true;
    $('slider').hidden = true;
    $('download').hidden = true;
    $('preview-box').hidden = !state.file;
  }

  // The after image covers the before image; clipping its left X% reveals the
  // before image there, so the slider moves the dividing line.
  function setClip(value) {
    const x = Math.min(100, Math.max(0, Number(value) || 0));
    $('after').style.clipPath = `inset(0 0 0 ${x}%)`;
    $('divider').style.left = `${x}%`;
  }

  // ------------------------------------------------------------------- wiring

  function init() {
    $('token').value = storedToken();
    if ($('token').value) showToken();
    $('token').addEventListener('input', (e) => storeToken(e.target.value.trim()));
    $('token').addEventListener('change', () => { if (!state.models) loadModels(); });
    $('token-box').addEventListener('submit', (e) => {
      e.preventDefault(); // Enter in the token field: retry with the new token
      if (!state.models) loadModels();
    });

    $('file').addEventListener('change', (e) => chooseFile(e.target.files[0]));
    const drop = $('drop');
    for (const type of ['dragenter', 'dragover']) {
      drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add('over'); });
    }
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) {
        $('file').value = ''; // the input no longer names the chosen file
        chooseFile(files[0]);
      }
    });
    // A file dropped elsewhere must not make the browser navigate away.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (e) => e.preventDefault());
    }

    $('preview').addEventListener('load', (e) => {
      state.dims = [e.target.naturalWidth, e.target.naturalHeight];
      describeInput();
    });
    $('upscale').addEventListener('input', describeInput);
    // Editing a control clears its error mark.
    for (const type of ['input', 'change']) {
      document.addEventListener(type, (e) => e.target.classList.remove('invalid'));
    }

    $('run').addEventListener('click', run);
    $('cancel').addEventListener('click', cancel);
    $('slider').addEventListener('input', (e) => setClip(e.target.value));
    setClip($('slider').value);
    updateButtons();
    loadModels();
  }

  init();
})();
