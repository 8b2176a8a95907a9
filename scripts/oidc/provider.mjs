// A real OIDC provider for farside's tests: panva's oidc-provider (a certified OP) with a
// password login page and a consent page of our own. scripts/oidc.sh installs and starts it.
//
// It issues JWT access tokens for the resource server `urn:farside` (audience `farside`) with
// the user's `groups` and `preferred_username`, supports the device authorization grant
// (RFC 8628) and refresh tokens (scope offline_access). Clients registered with
// `farside_access_token_format: "opaque"` get opaque access tokens instead, as INDIGO IAM may
// hand out; a resource server learns what they stand for by introspection (RFC 7662), with a
// confidential client of its own (`farside-gateway`).
//
// env: OIDC_PORT, OIDC_ISSUER, OIDC_STATE (keys live there), OIDC_CONFIG (users.json and
// clients.json; default: this file's directory).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Provider from 'oidc-provider';

const PORT = Number(process.env.OIDC_PORT || 9090);
const ISSUER = process.env.OIDC_ISSUER || `http://127.0.0.1:${PORT}`;
const CONFIG = process.env.OIDC_CONFIG || path.dirname(new URL(import.meta.url).pathname);
const STATE = process.env.OIDC_STATE || CONFIG;
const USERS = JSON.parse(fs.readFileSync(path.join(CONFIG, 'users.json'), 'utf8'));
const CLIENTS = JSON.parse(fs.readFileSync(path.join(CONFIG, 'clients.json'), 'utf8'));

// resource indicator -> the audience and scope its access tokens carry
const RESOURCES = { 'urn:farside': 'farside', 'urn:other': 'other' };

// Signing keys persist in the state directory, so tokens stay valid across restarts (and the
// provider does not fall back on its development keys, which it warns about).
function signingKeys() {
  const file = path.join(STATE, 'jwks.json');
  if (!fs.existsSync(file)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig' };
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
  }
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

const meta = (client, key) => client.metadata()[key];

const provider = new Provider(ISSUER, {
  clients: CLIENTS,
  jwks: signingKeys(),
  cookies: { keys: ['farside-test-cookie-key-0123456789'] },
  extraClientMetadata: {
    properties: ['farside_access_token_ttl', 'farside_resource', 'farside_access_token_format'],
  },
  features: {
    devInteractions: { enabled: false }, // they accept any password
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // a client that names no resource gets the one its registration names, else farside's
      defaultResource: (ctx, client, oneOf) =>
        oneOf || meta(client, 'farside_resource') || 'urn:farside',
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator, client) {
        const audience = RESOURCES[indicator];
        if (!audience) throw new Provider.errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          audience,
          scope: audience,
          accessTokenFormat: meta(client, 'farside_access_token_format') || 'jwt',
          accessTokenTTL: meta(client, 'farside_access_token_ttl') || 3600,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
  async findAccount(ctx, sub) {
    const user = USERS[sub];
    if (!user) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...user.claims }) };
  },
  // what a resource server (the gateway) needs to know who is calling, in the token itself
  async extraTokenClaims(ctx, token) {
    const user = USERS[token.accountId];
    if (!user || token.kind !== 'AccessToken') return undefined;
    const { preferred_username, groups } = user.claims;
    return { preferred_username, groups };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AccessToken: (ctx, token, client) =>
      token.resourceServer?.accessTokenTTL || meta(client, 'farside_access_token_ttl') || 3600,
    DeviceCode: 600,
    Grant: 86400,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 86400,
  },
});

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const html = (res, status, title, body) => {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html><head><title>${title}</title></head><body>
<h1>farside test IdP</h1>${body}</body></html>`);
};
const loginPage = (uid, error = '') => `${error ? `<p id="error">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login">
<label>Username <input id="username" name="username" autofocus required></label>
<label>Password <input id="password" name="password" type="password" required></label>
<button id="submit" type="submit">Sign in</button></form>`;
const consentPage = (uid, client, scopes) => `<p>${esc(client)} asks for: ${esc(scopes)}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
<button id="allow" type="submit">Allow</button></form>`;
const readForm = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => resolve(new URLSearchParams(body)));
});

async function interaction(req, res, action) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params, session } = details;
  if (req.method === 'GET') {
    if (prompt.name === 'login') return html(res, 200, 'Sign in', loginPage(uid));
    return html(res, 200, 'Allow access', consentPage(uid, params.client_id, params.scope));
  }
  if (action === '/login') {
    const form = await readForm(req);
    const name = form.get('username');
    if (!USERS[name] || USERS[name].password !== form.get('password')) {
      return html(res, 401, 'Sign in', loginPage(uid, 'Invalid username or password'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: name } },
      { mergeWithLastSubmission: false });
  }
  // consent: grant what the client asked for
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scope] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scope.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
}

const callback = provider.callback();
http.createServer(async (req, res) => {
  try {
    const m = req.url.match(/^\/interaction\/([\w-]+)(\/login|\/confirm)?$/);
    if (!m) return callback(req, res);
    return await interaction(req, res, m[2]);
  } catch (e) {
    console.error(e);
    return html(res, 500, 'Error', `<p id="error">${esc(e.message || e)}</p>`);
  }
}).listen(PORT, '127.0.0.1', () => console.log(`oidc-provider ${ISSUER} listening`));
