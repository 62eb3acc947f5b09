// How a browser client uses the token service: fetch a client secret, then open a WebRTC session
// with OpenAI's Realtime API using that secret as the bearer. The OpenAI key never reaches the page.
//
//   const session = await startParkerSession('https://<token-service>', { difficulty: 'expert', sport: 'nba' });
//   session.events.onmessage = (e) => console.log(JSON.parse(e.data));
//   ...later: session.close();

/** With caller authentication on (AUTH_JWKS_URL / AUTH_JWT_SECRET), the signed-in user's JWT as a header. */
async function authHeader(media) {
  return media.getAuthToken ? { Authorization: `Bearer ${await media.getAuthToken()}` } : {};
}

/** The one error envelope, {error: {code, message, request_id, retry_after?}}, as an Error. */
async function serviceError(response) {
  const { error } = await response.json();
  const wait = error.retry_after ? ` (retry in ${error.retry_after} s)` : '';
  return new Error(`token service: ${error.code} ${error.message}${wait} [${error.request_id}]`);
}

/** A peer connection with the microphone and the events channel: the model's voice comes back as a remote track. */
async function peerWithMicrophone(media) {
  const pc = new RTCPeerConnection();
  const audio = media.audioElement ?? Object.assign(document.createElement('audio'), { autoplay: true });
  pc.ontrack = (event) => {
    audio.srcObject = event.streams[0];
  };
  const microphone = media.microphone ?? (await navigator.mediaDevices.getUserMedia({ audio: true }));
  for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);
  const events = pc.createDataChannel('oai-events');
  await pc.setLocalDescription(await pc.createOffer());
  const stop = () => {
    events.close();
    pc.close();
    for (const track of microphone.getTracks()) track.stop();
  };
  return { pc, events, stop };
}

/**
 * Step 1 of the token flow: a short-lived secret from the token service (the browser sends its
 * Origin itself). In an MV3 extension the service worker may do this step; the next one needs a page.
 * @param {string} serviceUrl  base URL of the token service
 * @param {{model?: string, voice?: string, difficulty?: 'easy'|'savage'|'expert', sport?: string, instructions?: string}} options
 * @param {{getAuthToken?: () => Promise<string>}} [media]
 *   getAuthToken: when the service requires caller authentication (AUTH_JWKS_URL / AUTH_JWT_SECRET),
 *   returns the signed-in user's JWT (see README, "Protecting your key").
 * @returns {Promise<{client_secret: string, expires_at: number, session_id: string, model: string, voice: string, instructions: string, web_rtc_url: string, websocket_url: string}>}
 */
export async function mintClientSecret(serviceUrl, options = {}, media = {}) {
  const response = await fetch(`${serviceUrl}/v1/realtime/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(await authHeader(media)) },
    body: JSON.stringify(options),
  });
  if (!response.ok) throw await serviceError(response);
  return response.json();
}

/**
 * Step 2 of the token flow: the SDP offer goes to OpenAI (`web_rtc_url`) with the secret as bearer;
 * the answer completes the handshake. Needs RTCPeerConnection (and getUserMedia unless a microphone
 * stream is given): a page, an extension page or an offscreen document, never an MV3 service worker.
 * @param {{client_secret: string, web_rtc_url: string}} token  what mintClientSecret returned
 * @param {{audioElement?: HTMLAudioElement, microphone?: MediaStream}} [media]
 */
export async function connectWithSecret(token, media = {}) {
  const { pc, events, stop } = await peerWithMicrophone(media);
  const answer = await fetch(token.web_rtc_url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token.client_secret}`, 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  if (!answer.ok) {
    stop();
    throw new Error(`OpenAI refused the call: ${answer.status}`);
  }
  await pc.setRemoteDescription({ type: 'answer', sdp: await answer.text() });
  return { pc, events, close: stop };
}

/**
 * Both steps of the token flow.
 * @param {string} serviceUrl  base URL of the token service
 * @param {{model?: string, voice?: string, difficulty?: 'easy'|'savage'|'expert', sport?: string, instructions?: string}} options
 * @param {{audioElement?: HTMLAudioElement, microphone?: MediaStream, getAuthToken?: () => Promise<string>}} [media]
 */
export async function startParkerSession(serviceUrl, options = {}, media = {}) {
  const token = await mintClientSecret(serviceUrl, options, media);
  const { pc, events, close } = await connectWithSecret(token, media);
  return {
    pc,
    events,
    token: { expiresAt: token.expires_at, sessionId: token.session_id, model: token.model, voice: token.voice },
    close,
  };
}

// The relay flow: the page never holds any credential, not even a short-lived secret. It POSTs its
// SDP offer to the service, which asks OpenAI with the server key and hands back OpenAI's answer.
// Media still flows straight between the browser and OpenAI; the service also ends the call on time.
//
//   const call = await startParkerCall('https://<token-service>', { difficulty: 'savage', sport: 'nba' });
//   console.log(`ends at ${new Date(call.endsAt * 1000)}`);
//   ...later: await call.close();   // ends it at OpenAI too, and frees the slot

/**
 * @param {string} serviceUrl  base URL of the token service
 * @param {{model?: string, voice?: string, difficulty?: 'easy'|'savage'|'expert', sport?: string}} choices
 * @param {{audioElement?: HTMLAudioElement, microphone?: MediaStream, getAuthToken?: () => Promise<string>}} [media]
 */
export async function startParkerCall(serviceUrl, choices = {}, media = {}) {
  const { pc, events, stop } = await peerWithMicrophone(media);

  // The choices travel in the query; the body is the offer itself. No credential of OpenAI's at all
  // (only the user's JWT when the service requires sign-in).
  const auth = await authHeader(media);
  const query = new URLSearchParams(Object.entries(choices).filter(([, value]) => value !== undefined));
  const response = await fetch(`${serviceUrl}/v1/realtime/calls?${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', ...auth },
    body: pc.localDescription.sdp,
  });
  if (!response.ok) {
    stop();
    throw await serviceError(response);
  }
  // Location and X-Call-Ends-At are exposed through CORS.
  const location = response.headers.get('Location');
  const endsAt = Number(response.headers.get('X-Call-Ends-At'));
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });

  return {
    pc,
    events,
    callId: location.split('/').pop(),
    endsAt,
    /** Ends the call at OpenAI too and frees the slot; resolves to the DELETE's status (204), or undefined offline. */
    async close() {
      stop();
      const ended = await fetch(new URL(location, serviceUrl), { method: 'DELETE', headers: auth }).catch(() => undefined);
      return ended?.status;
    },
  };
}
