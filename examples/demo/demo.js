// The example page of `npm run demo`: both flows of examples/webrtc-client.js, wired to buttons.
// The service is this page's own origin, or ?service=<url> for a copy of this page served elsewhere
// (allow that page's origin with DEMO_ORIGINS).
import { connectWithSecret, mintClientSecret, startParkerCall } from './webrtc-client.js';

const serviceUrl = new URLSearchParams(location.search).get('service') ?? location.origin;
const $ = (id) => document.getElementById(id);
$('service').textContent = serviceUrl;

function choices() {
  const form = new FormData($('choices'));
  return { voice: form.get('voice'), difficulty: form.get('difficulty'), sport: form.get('sport') || undefined };
}

/** The user's microphone when asked for, else a silent track: enough for an offer, no permission prompt. */
async function microphone() {
  if (new FormData($('choices')).get('microphone')) return navigator.mediaDevices.getUserMedia({ audio: true });
  const context = new AudioContext();
  const silence = context.createGain();
  silence.gain.value = 0;
  const destination = context.createMediaStreamDestination();
  const tone = context.createOscillator();
  tone.connect(silence).connect(destination);
  tone.start();
  return destination.stream;
}

function say(id, text, failed = false) {
  $(id).textContent = text;
  $(id).classList.toggle('error', failed);
}

/** Runs a button's work with the button disabled (again after it unless `once`), and shows a failure where the user looks. */
function onClick(button, status, work, once = false) {
  $(button).addEventListener('click', async () => {
    $(button).disabled = true;
    try {
      await work();
    } catch (error) {
      say(status, String(error.message ?? error), true);
      $(button).disabled = false;
      return;
    }
    $(button).disabled = once;
  });
}

let token;
let session;
onClick('mint', 'token-status', async () => {
  session?.close();
  token = await mintClientSecret(serviceUrl, choices());
  $('client-secret').textContent = token.client_secret;
  $('expires-at').textContent = `${token.expires_at} (${new Date(token.expires_at * 1000).toLocaleTimeString()})`;
  $('web-rtc-url').textContent = token.web_rtc_url;
  $('connect').disabled = false;
  say('token-status', `Minted for ${token.model}, voice ${token.voice}. Hand it to one client only.`);
});

onClick('connect', 'token-status', async () => {
  session?.close();
  session = await connectWithSecret(token, { microphone: await microphone() });
  $('token-answer').textContent = session.pc.remoteDescription.sdp;
  say('token-status', `OpenAI answered the offer (signaling ${session.pc.signalingState}). SDP answer:`);
});

let call;
onClick('call', 'relay-status', async () => {
  call = await startParkerCall(serviceUrl, choices(), { microphone: await microphone() });
  $('call-id').textContent = call.callId;
  $('ends-at').textContent = `${call.endsAt} (${new Date(call.endsAt * 1000).toLocaleTimeString()})`;
  $('relay-answer').textContent = call.pc.remoteDescription.sdp;
  $('hangup').disabled = false;
  say('relay-status', `The service relayed the offer (signaling ${call.pc.signalingState}). SDP answer:`);
});

onClick(
  'hangup',
  'relay-status',
  async () => {
    const status = await call.close();
    say('relay-status', status === 204 ? 'Call ended: DELETE answered 204.' : `DELETE answered ${status}.`, status !== 204);
  },
  true,
);
