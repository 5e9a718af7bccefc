package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts the name of every environment variable Load reads: the
// setting's name upper-cased with "-" turned into "_", e.g. PUSHPULL_DATA_DIR.
const EnvPrefix = "PUSHPULL_"

// ConfigFlag names the flag (and, through EnvPrefix, the environment
// variable PUSHPULL_CONFIG) that points Load at a JSON config file.
const ConfigFlag = "config"

// Error is a setting whose value is unusable. Its message names the setting
// the way the user wrote it, so that the one line it prints is enough to find
// and fix the value.
type Error struct {
	// Name is the setting as given: "--addr" for a flag (and for Validate,
	// which cannot know where a value came from), "PUSHPULL_ADDR" for the
	// environment, "addr" for a key of the config file.
	Name string
	// File is the config file the value came from, or empty.
	File string
	// Value is the offending value: as typed for flags and the environment,
	// as JSON text for the config file. It is empty for secrets.
	Value string
	// Reason says what is wrong and, where it helps, what is wanted.
	Reason string

	// secret leaves Value out of the message: it goes to logs and terminals.
	secret bool
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		fmt.Fprintf(&b, "config file %s: ", e.File)
	}
	b.WriteString("invalid ")
	b.WriteString(e.Name)
	switch {
	case e.secret:
	case e.File != "":
		b.WriteString(" ")
		b.WriteString(e.Value) // already JSON, quoted where it is a string
	default:
		b.WriteString(" ")
		b.WriteString(strconv.Quote(e.Value))
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Load builds the configuration of `pushpull serve` from, in increasing order
// of precedence: Default(), the JSON config file named by --config (or
// PUSHPULL_CONFIG), the PUSHPULL_* environment variables, and the flags in
// args (the arguments after "serve"). It does not call Validate, so that a
// caller can adjust the result first; `serve` validates it.
//
// env looks up an environment variable, like os.Getenv; an empty value counts
// as unset, since env cannot tell the two apart. readFile reads the config
// file, like os.ReadFile, which is used when it is nil. When args ask for
// help, Load returns flag.ErrHelp; WriteFlagHelp describes the flags.
func Load(args []string, env func(string) string, readFile func(string) ([]byte, error)) (Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	if readFile == nil {
		readFile = os.ReadFile
	}
	table := settings()

	// The flags are parsed first, because one of them names the file whose
	// values they then override; they are only recorded here and applied last.
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller reports errors and prints help
	var configPath string
	fs.StringVar(&configPath, ConfigFlag, "", "")
	given := make(map[string]string)
	for _, s := range table {
		fs.Var(recordedFlag{name: s.name, given: given}, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, flag.ErrHelp
		}
		return Config{}, FlagError(err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q: serve takes only flags", fs.Arg(0))
	}
	if configPath == "" {
		configPath = env(envName(ConfigFlag))
	}

	cfg := Default()
	if configPath != "" {
		data, err := readFile(configPath)
		if err != nil {
			return Config{}, fmt.Errorf("invalid --%s: %w", ConfigFlag, err)
		}
		if err := applyFile(&cfg, table, configPath, data); err != nil {
			return Config{}, err
		}
	}
	for _, s := range table {
		name := envName(s.name)
		if v := env(name); v != "" {
			if err := s.setString(&cfg, name, v); err != nil {
				return Config{}, err
			}
		}
	}
	for _, s := range table {
		if v, ok := given[s.name]; ok {
			if err := s.setString(&cfg, flagName(s.name), v); err != nil {
				return Config{}, err
			}
		}
	}
	return cfg, nil
}

// WriteFlagHelp writes the flags Load accepts, each with its environment
// variable and default, in the layout of the other commands' help.
func WriteFlagHelp(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "  --%s FILE\n        JSON config file; its keys are the flag names (env %s)\n",
		ConfigFlag, envName(ConfigFlag))
	def := Default()
	for _, s := range settings() {
		fmt.Fprintf(&b, "  --%s %s\n        %s (env %s", s.name, s.arg, s.usage, envName(s.name))
		if d := s.format(&def); d != "" {
			fmt.Fprintf(&b, "; default %s", d)
		}
		b.WriteString(")\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

// recordedFlag stores a flag's text for Load to parse after the file and the
// environment, so that the flag wins and its errors read like the others'.
type recordedFlag struct {
	name  string
	given map[string]string
}

func (f recordedFlag) String() string {
	if f.given == nil { // the zero value, made by the flag package for help
		return ""
	}
	return f.given[f.name]
}

func (f recordedFlag) Set(v string) error {
	f.given[f.name] = v // a repeated flag: the last one wins, as for scalars
	return nil
}

// FlagError rewords an error of the flag package in the words of the other
// setting errors, which spell flags with "--" as the help does:
// "flag provided but not defined: -adr" becomes "unknown flag --adr".
// Other errors are returned as they are.
func FlagError(err error) error {
	msg := err.Error()
	for _, r := range []struct{ prefix, format string }{
		{"flag provided but not defined: -", "unknown flag --%s"},
		{"flag needs an argument: -", "--%s wants a value"},
	} {
		if name, ok := strings.CutPrefix(msg, r.prefix); ok {
			return fmt.Errorf(r.format, strings.TrimPrefix(name, "-"))
		}
	}
	// invalid value "x" for flag -n: parse error
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		if value, after, ok := strings.Cut(rest, " for flag -"); ok {
			name, reason, _ := strings.Cut(after, ": ")
			return fmt.Errorf("invalid --%s %s: %s", strings.TrimPrefix(name, "-"), value, reason)
		}
	}
	return err
}

func flagName(name string) string { return "--" + name }

func envName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyFile sets the keys of a JSON object. A key that names no setting is an
// error rather than ignored: a misspelt key would otherwise silently leave the
// default in force.
func applyFile(cfg *Config, table []setting, file string, data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("config file %s: want a JSON object: %w", file, err)
	}
	if obj == nil { // the file said null
		return fmt.Errorf("config file %s: want a JSON object", file)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: unexpected data after the JSON object", file)
	}
	byName := make(map[string]setting, len(table))
	for _, s := range table {
		byName[s.name] = s
	}
	// Apply in table order so that the first bad key reported is stable.
	for key := range obj {
		if _, ok := byName[key]; !ok {
			return fmt.Errorf("config file %s: unknown setting %q", file, key)
		}
	}
	for _, s := range table {
		raw, ok := obj[s.name]
		if !ok {
			continue
		}
		if err := s.setJSON(cfg, file, raw); err != nil {
			return err
		}
	}
	return nil
}

// parseDuration reads Go duration syntax ("40s", "1m30s") or, because Bitrix
// admins think of these timeouts in seconds, a whole number of seconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return secondsDuration(n)
	}
	return time.ParseDuration(s)
}

func secondsDuration(n int64) (time.Duration, error) {
	const limit = int64(1<<63-1) / int64(time.Second)
	if n > limit || n < -limit {
		return 0, errors.New("out of range")
	}
	return time.Duration(n) * time.Second, nil
}

// parseSize reads a byte count, optionally with a binary suffix (KiB, MiB,
// GiB), so that 1MiB need not be written as 1048576.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > (1<<63-1)/mult || n < -(1<<63-1)/mult {
		return 0, errors.New("out of range")
	}
	return n * mult, nil
}

// splitList reads a comma-separated list, ignoring blanks around and between
// the elements.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
