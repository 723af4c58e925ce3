// A real OpenID provider for pbackend's tests: npm `oidc-provider` with its development
// login screens (any password; the login is the account id), on 127.0.0.1:$PORT.
//
// Environment:
//   PORT          the port to listen on
//   USERS_FILE    JSON {login: {name, email, groups, disabled}}, read again on every lookup
//                 (tests disable users and change groups while the provider runs)
//   KEY_ID        the signing key's id; the key is generated from it on start, so a restart
//                 with another id is a key rotation
//   REDIRECT_URI  pbackend's callback (client `pbackend`, secret `pbackend-secret`)
//   CI_REDIRECT   the callback of client `ci` (a CI system that mints ID tokens for token
//                 exchange; the test stops at this redirect and takes the code)
//   ID_TOKEN_TTL  lifetime of ID tokens in seconds (default 600; short ones test expiry)
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;

function users() {
  return JSON.parse(readFileSync(process.env.USERS_FILE, 'utf8'));
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KEY_ID, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'pbackend',
      client_secret: 'pbackend-secret',
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'ci',
      client_secret: 'ci-secret',
      redirect_uris: [process.env.CI_REDIRECT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  // The claims of the granted scopes go into the ID token itself.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  // Refresh tokens whenever the client may use them (not only after a consent prompt).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: { AccessToken: 600, IdToken: Number(process.env.ID_TOKEN_TTL || 600), AuthorizationCode: 60, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
  async findAccount(_ctx, id) {
    const u = users()[id];
    if (!u || u.disabled) return undefined;
    return {
      accountId: id,
      async claims() {
        // Read again: a refresh sees today's groups.
        const now = users()[id] || {};
        return {
          sub: id,
          preferred_username: id,
          name: now.name || id,
          email: now.email || `${id}@example.test`,
          groups: now.groups || [],
        };
      },
    };
  },
});
// Refuse refreshes for users who are gone or disabled since.
provider.on('grant.error', (_ctx, err) => console.error('grant error:', err.message));

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});
