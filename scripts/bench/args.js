// `--name value` from the command line as a number, or the default.
export function numberArg(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}
