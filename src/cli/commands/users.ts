import { ROLES, type User } from '../api-types.js';
import { optBool, optChoice, optString, reqString, type CommandSpec } from '../command.js';
import { UsageError } from '../errors.js';
import { shortTime, type Column } from '../output.js';
import { listAll } from './shared.js';

const USER_COLUMNS: Column<User>[] = [
  { header: 'ID', value: 'id' },
  { header: 'EMAIL', value: 'email' },
  { header: 'NAME', value: 'name' },
  { header: 'ROLE', value: 'role' },
  { header: 'STATUS', value: (u: User) => (u.disabled ? 'disabled' : 'enabled') },
  { header: 'JWT SUBJECT', value: 'jwt_subject' },
  { header: 'LAST SEEN', value: (u: User) => shortTime(u.last_seen_at) },
];

const create: CommandSpec = {
  name: 'users create',
  summary: 'create a user',
  usage: '--email EMAIL --role ROLE [--name NAME] [--jwt-subject SUB] [--disabled]',
  description: [
    'Users sign in with API keys created for them (floodgate keys create --user EMAIL) or with',
    'JWTs whose sub is their --jwt-subject.',
  ],
  options: {
    email: { type: 'string', value: 'EMAIL', help: 'unique, case-insensitive (required)' },
    role: { type: 'string', value: 'ROLE', help: `${ROLES.join(', ')} (required)` },
    name: { type: 'string', value: 'NAME', help: 'display name' },
    'jwt-subject': { type: 'string', value: 'SUB', help: "the identity provider's sub claim" },
    disabled: { type: 'boolean', help: 'create the user disabled' },
    quiet: { type: 'boolean', short: 'q', help: 'print only the new id (for scripts)' },
  },
  positionals: { min: 0, max: 0 },
  examples: ['floodgate users create --email ada@example.com --role developer --name "Ada Lovelace"'],
  async run(ctx) {
    const v = ctx.values;
    const email = reqString(v, 'email', this.name);
    const role = optChoice(v, 'role', this.name, ROLES);
    if (!role) throw new UsageError('--role is required', this.name);
    const body: Record<string, unknown> = { email, role };
    const name = optString(v, 'name');
    if (name !== undefined) body.name = name;
    const subject = optString(v, 'jwt-subject');
    if (subject !== undefined) body.jwt_subject = subject;
    if (optBool(v, 'disabled')) body.disabled = true;
    const user = await ctx.client().post<User>('/api/admin/users', body);
    if (ctx.json) return ctx.out.json(user);
    if (optBool(v, 'quiet')) return ctx.out.line(user.id);
    ctx.out.line(`Created user ${user.id}`);
    ctx.out.record([
      ['email', user.email],
      ['name', user.name],
      ['role', user.role],
      ['status', user.disabled ? 'disabled' : 'enabled'],
    ]);
  },
};

const list: CommandSpec = {
  name: 'users list',
  summary: 'list users',
  usage: '[--role ROLE] [--email EMAIL]',
  options: {
    role: { type: 'string', value: 'ROLE', help: 'only users with this role' },
    email: { type: 'string', value: 'EMAIL', help: 'only the user with this email' },
  },
  positionals: { min: 0, max: 0 },
  async run(ctx) {
    const role = optChoice(ctx.values, 'role', this.name, ROLES);
    const users = await listAll<User>(ctx.client(), '/api/admin/users', {
      role,
      email: optString(ctx.values, 'email'),
    });
    if (ctx.json) return ctx.out.json(users);
    ctx.out.table(USER_COLUMNS, users, '(no users)');
  },
};

export const USERS_COMMANDS = [create, list];
