// How a browser client uses the token service: fetch a client secret, then open a WebRTC session
// with OpenAI's Realtime API using that secret as the bearer. The OpenAI key never reaches the page.
//
//   const session = await startParkerSession('https://<token-service>', { difficulty: 'expert', sport: 'nba' });
//   session.events.onmessage = (e) => console.log(JSON.parse(e.data));
//   ...later: session.close();

/**
 * @param {string} serviceUrl  base URL of the token service
 * @param {{model?: string, voice?: string, difficulty?: 'easy'|'savage'|'expert', sport?: string, instructions?: string}} options
 * @param {{audioElement?: HTMLAudioElement, microphone?: MediaStream}} [media]
 */
export async function startParkerSession(serviceUrl, options = {}, media = {}) {
  // 1. A short-lived secret from the token service (the browser sends its Origin itself).
  const tokenResponse = await fetch(`${serviceUrl}/v1/realtime/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(options),
  });
  if (!tokenResponse.ok) {
    // The one error envelope: {error: {code, message, request_id, retry_after?}}
    const { error } = await tokenResponse.json();
    const wait = error.retry_after ? ` (retry in ${error.retry_after} s)` : '';
    throw new Error(`token service: ${error.code} ${error.message}${wait} [${error.request_id}]`);
  }
  const token = await tokenResponse.json();

  // 2. A peer connection: the model's voice comes back as a remote track, events on a data channel.
  const pc = new RTCPeerConnection();
  const audio = media.audioElement ?? Object.assign(document.createElement('audio'), { autoplay: true });
  pc.ontrack = (event) => {
    audio.srcObject = event.streams[0];
  };
  const microphone = media.microphone ?? (await navigator.mediaDevices.getUserMedia({ audio: true }));
  for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);
  const events = pc.createDataChannel('oai-events');

  // 3. The SDP offer goes to OpenAI with the secret as bearer; the answer completes the handshake.
  await pc.setLocalDescription(await pc.createOffer());
  const answer = await fetch(token.web_rtc_url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token.client_secret}`, 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  if (!answer.ok) throw new Error(`OpenAI refused the call: ${answer.status}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: await answer.text() });

  return {
    pc,
    events,
    token: { expiresAt: token.expires_at, sessionId: token.session_id, model: token.model, voice: token.voice },
    close() {
      events.close();
      pc.close();
      for (const track of microphone.getTracks()) track.stop();
    },
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
 * @param {{audioElement?: HTMLAudioElement, microphone?: MediaStream}} [media]
 */
export async function startParkerCall(serviceUrl, choices = {}, media = {}) {
  const pc = new RTCPeerConnection();
  const audio = media.audioElement ?? Object.assign(document.createElement('audio'), { autoplay: true });
  pc.ontrack = (event) => {
    audio.srcObject = event.streams[0];
  };
  const microphone = media.microphone ?? (await navigator.mediaDevices.getUserMedia({ audio: true }));
  for (const track of microphone.getAudioTracks()) pc.addTrack(track, microphone);
  const events = pc.createDataChannel('oai-events');
  await pc.setLocalDescription(await pc.createOffer());

  // The choices travel in the query; the body is the offer itself. No Authorization header.
  const query = new URLSearchParams(Object.entries(choices).filter(([, value]) => value !== undefined));
  const response = await fetch(`${serviceUrl}/v1/realtime/calls?${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  if (!response.ok) {
    const { error } = await response.json();
    const wait = error.retry_after ? ` (retry in ${error.retry_after} s)` : '';
    pc.close();
    throw new Error(`token service: ${error.code} ${error.message}${wait} [${error.request_id}]`);
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
    async close() {
      events.close();
      pc.close();
      for (const track of microphone.getTracks()) track.stop();
      await fetch(new URL(location, serviceUrl), { method: 'DELETE' }).catch(() => undefined);
    },
  };
}
