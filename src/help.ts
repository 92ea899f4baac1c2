// The --help page, laid out like the help of clap-based tools (uv, ripgrep): flags on the left,
// descriptions beside them, or below them when the width leaves too little room; every line
// wrapped at word boundaries. (yargs' own help, in its ES-module build, wraps by counting
// characters and so splits words: yargs/yargs#2112.)

export interface HelpOption {
  /** Long name, without the dashes. */
  readonly flag: string;
  readonly short?: string;
  /** Placeholder for the value (`SECS` shows as `<SECS>`); absent for a switch. */
  readonly value?: string;
  readonly describe: string;
  /** Shown as `[default: …]`. */
  readonly default?: string;
  /** What leaving the option out means when there is no default value (`never`). */
  readonly defaultText?: string;
  /** The environment variable that can stand in for the option. */
  readonly env?: string;
}

export interface HelpPage {
  readonly about: string;
  readonly usage: string;
  readonly arguments: readonly { readonly name: string; readonly describe: string }[];
  readonly sections: readonly { readonly title: string; readonly options: readonly HelpOption[] }[];
  /** One command line, the page's last line. */
  readonly example: string;
}

/** Used when the width is neither set (COLUMNS) nor a terminal's. */
const DEFAULT_WIDTH = 100;
/** Longer lines are hard to read; narrower ones leave no room for the flags. */
const MAX_WIDTH = 120;
const MIN_WIDTH = 40;
/** Descriptions narrower than this go below their flags, indented by DEEP_INDENT. */
const MIN_DESCRIBE_WIDTH = 40;
const DEEP_INDENT = 10;

/** The help's width: COLUMNS when set, else the terminal's, else DEFAULT_WIDTH; kept within
 * MIN_WIDTH..MAX_WIDTH. */
export function helpWidth(columnsEnv: string | undefined, terminalColumns: number | undefined): number {
  const fromEnv = columnsEnv !== undefined && /^\d+$/.test(columnsEnv) ? Number(columnsEnv) : 0;
  const width = fromEnv > 0 ? fromEnv : (terminalColumns ?? DEFAULT_WIDTH);
  return Math.min(MAX_WIDTH, Math.max(MIN_WIDTH, width));
}

/** Greedy wrap at spaces, keeping a `[default: …]` tag together; a word longer than the width
 * keeps a line of its own, whole. */
export function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.match(/\[[^\]]*\]|\S+/g) ?? []) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** An option's description as the help shows it, default and environment variable included. */
export function optionText(option: HelpOption): string {
  const shownDefault = option.default ?? option.defaultText;
  return [
    option.describe,
    shownDefault === undefined ? '' : `[default: ${shownDefault}]`,
    option.env === undefined ? '' : `[env: ${option.env}]`,
  ].filter((part) => part !== '').join(' ');
}

function optionLabel(option: HelpOption): string {
  const long = `--${option.flag}${option.value === undefined ? '' : ` <${option.value}>`}`;
  return option.short === undefined ? `      ${long}` : `  -${option.short}, ${long}`;
}

interface Row {
  readonly label: string;
  readonly text: string;
}

function renderRows(rows: readonly Row[], column: number, width: number): string[] {
  const beside = width - column >= MIN_DESCRIBE_WIDTH;
  return rows.flatMap(({ label, text }) => {
    if (!beside) return [label, ...wrapWords(text, width - DEEP_INDENT).map((l) => ' '.repeat(DEEP_INDENT) + l)];
    const [first = '', ...rest] = wrapWords(text, width - column);
    return [label.padEnd(column) + first, ...rest.map((l) => ' '.repeat(column) + l)];
  });
}

export function renderHelp(page: HelpPage, width: number): string {
  const argumentRows = page.arguments.map((a) => ({ label: `  ${a.name}`, text: a.describe }));
  const sectionRows = page.sections.map((s) => ({
    title: s.title,
    rows: s.options.map((o) => ({ label: optionLabel(o), text: optionText(o) })),
  }));
  // One description column for the whole page, two spaces right of the longest label.
  const labels = [...argumentRows, ...sectionRows.flatMap((s) => s.rows)].map((r) => r.label.length);
  const column = Math.max(...labels) + 2;
  const blocks = [
    wrapWords(page.about, width),
    [`Usage: ${page.usage}`],
    ['Arguments:', ...renderRows(argumentRows, column, width)],
    ...sectionRows.map((s) => [`${s.title}:`, ...renderRows(s.rows, column, width)]),
    ['Example:', `  ${page.example}`],
  ];
  return `${blocks.map((lines) => lines.join('\n')).join('\n\n')}\n`;
}
