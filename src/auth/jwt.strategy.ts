import { PassportStrategy } from '@nestjs/passport';
import type { IncomingHttpHeaders } from 'node:http';
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import passport from 'passport';
import { Strategy } from 'passport-jwt';
import type { AppConfig } from '../config/app-config.js';
import { identityFromClaims, type JwtIdentity } from './jwt-claims.js';
import { jwtFailure } from './jwt-errors.js';

/** The bearer value the guard already extracted (passport-jwt reads it from this tiny request). */
interface TokenCarrier {
  headers: IncomingHttpHeaders;
  token: string;
}

const CLOCK_TOLERANCE_SECONDS = 5;

/**
 * passport-jwt, through @nestjs/passport's strategy mixin. Algorithms come only from
 * JWT_ALGORITHMS (never from the token or the key), so `alg: none` and an HS256 token "signed"
 * with the RS public key are refused by jsonwebtoken; `aud` is always checked, `iss` when set,
 * `exp` and `sub` are required (identityFromClaims).
 *
 * Each strategy registers itself in its own Passport instance rather than passport's global
 * singleton, so several applications in one process (tests, two instances) never share or
 * overwrite each other's key material.
 */
export class JwtStrategy extends PassportStrategy(Strategy, 'jwt') {
  declare private authenticator: passport.Authenticator | undefined;

  constructor(jwt: AppConfig['auth']['jwt']) {
    const key: KeyObject = jwt.publicKey
      ? createPublicKey(jwt.publicKey)
      : createSecretKey(Buffer.from(jwt.secret ?? '', 'utf8'));
    super({
      jwtFromRequest: (req: TokenCarrier) => req.token,
      // jsonwebtoken accepts a KeyObject; parsing the PEM once here keeps it off the hot path.
      secretOrKey: key as unknown as string,
      algorithms: [...jwt.algorithms],
      audience: jwt.audience,
      issuer: jwt.issuer,
      ignoreExpiration: false,
      jsonWebTokenOptions: { clockTolerance: CLOCK_TOLERANCE_SECONDS },
    });
  }

  /** Called by the mixin's constructor (runs before any field initialiser, hence the lazy ??=). */
  getPassportInstance(): passport.Authenticator {
    return (this.authenticator ??= new passport.Passport());
  }

  validate(payload: unknown): JwtIdentity {
    return identityFromClaims(payload);
  }

  /** Verifies a bearer token; rejects with the matching 401 ApiError. */
  verify(headers: IncomingHttpHeaders, token: string): Promise<JwtIdentity> {
    const carrier: TokenCarrier = { headers, token };
    return new Promise<JwtIdentity>((resolve, reject) => {
      const middleware = this.getPassportInstance().authenticate(
        'jwt',
        { session: false },
        (err: unknown, identity: JwtIdentity | false, info: unknown) => {
          if (err) reject(jwtFailure(err));
          else if (!identity) reject(jwtFailure(info));
          else resolve(identity);
        },
      ) as (req: unknown, res: unknown, next: (err?: unknown) => void) => void;
      middleware(carrier, {}, (err?: unknown) => reject(jwtFailure(err)));
    });
  }
}
