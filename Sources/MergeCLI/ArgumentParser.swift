/// One command-line argument a subcommand accepts.
struct ArgumentDefinition: Sendable {
  enum Kind: Sendable {
    /// A positional argument, `<recipe>`.
    case positional
    /// An option that takes a value, `--threads <n>`.
    case option(valueName: String)
    /// A flag, `--quiet`.
    case flag
  }

  var kind: Kind
  /// The long name without dashes (`threads`), or the positional's name (`recipe`).
  var name: String
  /// A one-letter short name, if any.
  var short: Character?
  /// One line of help.
  var help: String
  /// Whether a positional must be given.
  var isOptional: Bool = false
  /// Whether a positional takes one or more arguments (the ones the positionals before and
  /// after it leave).
  var isRepeated: Bool = false

  static func positional(_ name: String, help: String, optional: Bool = false) -> Self {
    ArgumentDefinition(kind: .positional, name: name, short: nil, help: help, isOptional: optional)
  }

  static func positionalList(_ name: String, help: String) -> Self {
    ArgumentDefinition(
      kind: .positional, name: name, short: nil, help: help, isOptional: false, isRepeated: true)
  }

  static func option(_ name: String, short: Character? = nil, value: String, help: String) -> Self {
    ArgumentDefinition(kind: .option(valueName: value), name: name, short: short, help: help)
  }

  static func flag(_ name: String, short: Character? = nil, help: String) -> Self {
    ArgumentDefinition(kind: .flag, name: name, short: short, help: help)
  }

  /// How the argument appears in help: `<recipe>`, `--threads <n>`, `-q, --quiet`.
  var synopsis: String {
    switch kind {
    case .positional: return "<\(name)>" + (isRepeated ? " ..." : "")
    case .option(let valueName):
      return (short.map { "-\($0), " } ?? "") + "--\(name) <\(valueName)>"
    case .flag: return (short.map { "-\($0), " } ?? "") + "--\(name)"
    }
  }

  /// How the argument appears in a usage line.
  var usage: String {
    switch kind {
    case .positional:
      return isRepeated ? "<\(name)> ..." : isOptional ? "[<\(name)>]" : "<\(name)>"
    case .option(let valueName): return "[--\(name) <\(valueName)>]"
    case .flag: return "[--\(name)]"
    }
  }
}

/// What a subcommand is called and how it describes itself.
struct CommandConfiguration: Sendable {
  var commandName: String
  var abstract: String
  var discussion: String = ""
  var arguments: [ArgumentDefinition] = []
}

/// A command-line mistake: exit status 64 with the usage line.
struct UsageError: Error, Sendable {
  var message: String
  /// The help line for the argument concerned, if any (argument-parser prints it as "Help:").
  var helpLine: String?
}

/// The values of a parsed command line, by argument name; commands read them through the
/// ``Option`` that declares each argument.
struct ParsedArguments: Sendable {
  var positionals: [String: String] = [:]
  /// The arguments of a repeated positional, by its name.
  var lists: [String: [String]] = [:]
  var options: [String: String] = [:]
  var flags: Set<String> = []
  var wantsHelp = false
}

/// Parses arguments the way swift-argument-parser does: long options with `--name value` or
/// `--name=value`, short flags, `--` to end options, and "did you mean" for misspelt options.
enum ArgumentParser {
  static func parse(
    _ arguments: [String], for configuration: CommandConfiguration
  ) throws(UsageError) -> ParsedArguments {
    var result = ParsedArguments()
    let definitions = configuration.arguments
    let positionals = definitions.filter {
      if case .positional = $0.kind { return true } else { return false }
    }
    var given: [String] = []
    var index = 0
    var optionsEnded = false
    while index < arguments.count {
      let arg = arguments[index]
      index += 1
      if !optionsEnded && (arg == "-h" || arg == "--help") {
        result.wantsHelp = true
        continue
      }
      if !optionsEnded && arg == "--" {
        optionsEnded = true
        continue
      }
      if !optionsEnded && arg.hasPrefix("-") && arg.count > 1 && Double(arg) == nil {
        try parseOption(arg, definitions, arguments, &index, into: &result)
        continue
      }
      given.append(arg)
    }
    // A repeated positional takes what the positionals before and after it leave.
    if let r = positionals.firstIndex(where: \.isRepeated) {
      let before = positionals[..<r]
      let after = positionals[(r + 1)...]
      for (p, arg) in zip(before, given) { result.positionals[p.name] = arg }
      let rest = Array(given.dropFirst(before.count))
      let tail = rest.suffix(min(after.count, rest.count))
      for (p, arg) in zip(after, tail) { result.positionals[p.name] = arg }
      let middle = Array(rest.dropLast(tail.count))
      if !middle.isEmpty { result.lists[positionals[r].name] = middle }
      if !result.wantsHelp && middle.isEmpty {
        throw UsageError(
          message: "Missing expected argument '<\(positionals[r].name)>'",
          helpLine: "  <\(positionals[r].name)>  \(positionals[r].help)")
      }
    } else {
      guard given.count <= positionals.count else {
        throw UsageError(
          message: "Unexpected argument '\(given[positionals.count])'", helpLine: nil)
      }
      for (p, arg) in zip(positionals, given) { result.positionals[p.name] = arg }
    }
    if !result.wantsHelp {
      for p in positionals where !p.isOptional && !p.isRepeated && result.positionals[p.name] == nil
      {
        throw UsageError(
          message: "Missing expected argument '<\(p.name)>'",
          helpLine: "  <\(p.name)>  \(p.help)")
      }
    }
    return result
  }

  /// Reads option or flag `arg` (and its value, the next argument unless given with `=`).
  private static func parseOption(
    _ arg: String, _ definitions: [ArgumentDefinition], _ arguments: [String],
    _ index: inout Int, into result: inout ParsedArguments
  ) throws(UsageError) {
    var name: String
    var inlineValue: String?
    var definition: ArgumentDefinition?
    if arg.hasPrefix("--") {
      name = String(arg.dropFirst(2))
      if let eq = name.firstIndex(of: "=") {
        inlineValue = String(name[name.index(after: eq)...])
        name = String(name[..<eq])
      }
      definition = definitions.first { $0.name == name && !isPositional($0) }
    } else {
      let letter = arg.dropFirst()
      guard letter.count == 1, let c = letter.first else {
        throw UsageError(message: "Unknown option '\(arg)'", helpLine: nil)
      }
      definition = definitions.first { $0.short == c }
      name = definition?.name ?? String(c)
    }
    guard let definition else {
      let candidates = definitions.filter { !isPositional($0) }.map { "--" + $0.name } + ["--help"]
      var message = "Unknown option '\(arg.split(separator: "=").first.map(String.init) ?? arg)'"
      if let s = closestOption(to: "--" + name, in: candidates) {
        message += ". Did you mean '\(s)'?"
      }
      throw UsageError(message: message, helpLine: nil)
    }
    switch definition.kind {
    case .flag:
      if inlineValue != nil {
        throw UsageError(message: "The flag '--\(name)' does not take a value", helpLine: nil)
      }
      result.flags.insert(definition.name)
    case .option:
      if let inlineValue {
        result.options[definition.name] = inlineValue
      } else if index < arguments.count {
        result.options[definition.name] = arguments[index]
        index += 1
      } else {
        throw UsageError(
          message: "Missing value for '\(definition.synopsis)'",
          helpLine: "  \(definition.synopsis)  \(definition.help)")
      }
    case .positional:
      break
    }
  }

  private static func isPositional(_ d: ArgumentDefinition) -> Bool {
    if case .positional = d.kind { return true }
    return false
  }

  /// The candidate within edit distance 3 of `name`, as argument-parser suggests.
  static func closestOption(to name: String, in candidates: [String]) -> String? {
    var best: (String, Int)?
    for c in candidates {
      let d = editDistance(Array(name), Array(c))
      if d < 4, d < (best?.1 ?? .max) { best = (c, d) }
    }
    return best?.0
  }

  static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = prev
    for i in 1...a.count {
      cur[0] = i
      for j in 1...b.count {
        cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
      }
      swap(&prev, &cur)
    }
    return prev[b.count]
  }
}

// MARK: - Help

enum HelpFormatter {
  static let columnWidth = 26

  static func usage(_ c: CommandConfiguration) -> String {
    var parts = ["merge", c.commandName]
    let positionals = c.arguments.filter {
      if case .positional = $0.kind { return true } else { return false }
    }
    parts += positionals.map(\.usage)
    parts += c.arguments.filter {
      if case .positional = $0.kind { return false } else { return true }
    }.map(\.usage)
    return parts.joined(separator: " ")
  }

  static func help(_ c: CommandConfiguration) -> String {
    var out = "OVERVIEW: \(c.abstract)\n"
    if !c.discussion.isEmpty { out += "\n" + c.discussion + "\n" }
    out += "\nUSAGE: \(usage(c))\n"
    let positionals = c.arguments.filter {
      if case .positional = $0.kind { return true } else { return false }
    }
    if !positionals.isEmpty {
      out += "\nARGUMENTS:\n"
      for p in positionals { out += row(p.synopsis, p.help) }
    }
    out += "\nOPTIONS:\n"
    for o in c.arguments {
      if case .positional = o.kind { continue }
      out += row(o.synopsis, o.help)
    }
    out += row("-h, --help", "Show help information.")
    return out
  }

  static func row(_ left: String, _ right: String) -> String {
    let indent = "  "
    let text = indent + left
    if text.count + 2 <= columnWidth {
      return text + String(repeating: " ", count: columnWidth - text.count) + right + "\n"
    }
    return text + "\n" + String(repeating: " ", count: columnWidth) + right + "\n"
  }
}
