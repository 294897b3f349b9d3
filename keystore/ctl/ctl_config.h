/*
 * morgatectl config commands: `config check FILE` validates a gateway config (the same pure
 * validation morgate runs at start and on SIGHUP) and points at the bad field.
 */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

/*
 * Run `morgatectl [--json] config SUBCOMMAND ARGS...`. Prints "ok: FILE (N models, M backends)"
 * or, with json, {"ok":true,...}; on a bad config one line on stderr naming the field path
 * ("morgatectl: config 'f.json': backends[0].base_url: must start with http:// or https://")
 * or the line and column of a JSON syntax error. Returns 0 valid, 1 invalid, 2 usage,
 * 3 the file cannot be read.
 */
int ctl_config_main(int argc, char **argv, int json);

#endif
