export { readLua } from '../../state/lua-file.js';
