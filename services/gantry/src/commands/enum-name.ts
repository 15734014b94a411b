/**
 * A proto enum value's name without its prefix, as the CLI prints it:
 * `enumName(flagsv1.flagStateToJSON, 'FLAG_STATE_')` maps FLAG_STATE_ENABLED to ENABLED.
 */
export function enumName<E>(toJson: (value: E) => string, prefix: string): (value: E) => string {
  return (value) => {
    const name = toJson(value);
    return name.startsWith(prefix) ? name.slice(prefix.length) : name;
  };
}
