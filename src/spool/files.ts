/** The spool's file name, in a module of its own so a command can look for the file without loading SQLite. */
export const SPOOL_FILE = 'spool.db';
