// Passkey ceremonies of the checkout and wallet pages. Binary fields travel as
// base64url; the server checks everything the browser sends.
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const encode = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const decode = (text) =>
    Uint8Array.from(atob(text.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));

  async function post(url, body) {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((answer.error && answer.error.message) || 'The request failed.');
    return answer;
  }

  function show(error) {
    const box = document.getElementById('message');
    box.textContent = error.name === 'NotAllowedError' ? 'The passkey prompt was closed.' : error.message;
    box.hidden = false;
  }

  const passkeys = typeof window.PublicKeyCredential === 'function';
  document.querySelectorAll('[data-needs-passkey]').forEach((el) => { el.hidden = !passkeys; });
  document.querySelectorAll('[data-without-passkey]').forEach((el) => el.classList.toggle('prominent', !passkeys));

  const create = document.getElementById('create-wallet');
  if (create) create.addEventListener('click', async () => {
    create.disabled = true;
    try {
      const { challengeId, publicKey } = await post('/webauthn/register/options', {});
      publicKey.challenge = decode(publicKey.challenge);
      publicKey.user.id = decode(publicKey.user.id);
      const credential = await navigator.credentials.create({ publicKey });
      await post('/webauthn/register/finish', {
        challengeId,
        credentialId: encode(credential.rawId),
        clientDataJSON: encode(credential.response.clientDataJSON),
        attestationObject: encode(credential.response.attestationObject),
      });
      location.assign(create.dataset.return || '/wallet');
    } catch (error) {
      show(error);
      create.disabled = false;
    }
  });

  const approve = document.getElementById('approve');
  if (approve) approve.addEventListener('click', async () => {
    approve.disabled = true;
    try {
      const { challengeId, publicKey } = await post('/webauthn/approve/options', { sessionId: approve.dataset.session });
      publicKey.challenge = decode(publicKey.challenge);
      publicKey.allowCredentials = publicKey.allowCredentials.map((c) => ({ ...c, id: decode(c.id) }));
      const assertion = await navigator.credentials.get({ publicKey });
      await post('/webauthn/approve/finish', {
        challengeId,
        credentialId: encode(assertion.rawId),
        clientDataJSON: encode(assertion.response.clientDataJSON),
        authenticatorData: encode(assertion.response.authenticatorData),
        signature: encode(assertion.response.signature),
      });
      location.reload();
    } catch (error) {
      show(error);
      approve.disabled = false;
    }
  });

  // Granting a mandate: the terms as filled in, bound into the passkey's challenge.
  const grant = document.getElementById('grant-passkey');
  if (grant) grant.addEventListener('click', async () => {
    grant.disabled = true;
    const form = document.getElementById('grant-form');
    const value = (name) => form.elements[name].value;
    const terms = {
      sessionId: form.dataset.session,
      perCall: value('perCall'),
      period: value('period'),
      periodLimit: value('periodLimit'),
      total: value('total'),
    };
    try {
      const { challengeId, publicKey, expiresAt } = await post('/webauthn/grant/options', { ...terms, days: value('days') });
      publicKey.challenge = decode(publicKey.challenge);
      publicKey.allowCredentials = publicKey.allowCredentials.map((c) => ({ ...c, id: decode(c.id) }));
      const assertion = await navigator.credentials.get({ publicKey });
      await post('/webauthn/grant/finish', {
        ...terms,
        expiresAt,
        challengeId,
        credentialId: encode(assertion.rawId),
        clientDataJSON: encode(assertion.response.clientDataJSON),
        authenticatorData: encode(assertion.response.authenticatorData),
        signature: encode(assertion.response.signature),
      });
      location.reload();
    } catch (error) {
      show(error);
      grant.disabled = false;
    }
  });
})();
