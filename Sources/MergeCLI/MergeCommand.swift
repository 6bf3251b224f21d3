import MergeModel
import MergeRecipe

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Exit statuses, as swift-argument-parser uses them.
public enum ExitCode {
  /// Success, or help shown.
  public static let success: Int32 = 0
  /// The recipe, an input or the run failed.
  public static let failure: Int32 = 1
  /// The command line was wrong.
  public static let usage: Int32 = 64
}

/// The `merge` command: parses the command line and runs a subcommand.
public enum MergeCommand {
  /// The version `merge --version` prints.
  public static let version = Tool.version

  static let abstract = "Compile and run mergekit merge recipes."

  static var subcommands: [any Subcommand.Type] {
    [
      CheckCommand.self, PlanCommand.self, RunCommand.self, LockCommand.self, VerifyCommand.self,
      DiffCommand.self, ApplyCommand.self, AnalyzeCommand.self, ExtractLoraCommand.self,
      AssembleCommand.self,
      GraphCommand.self,
      InspectCommand.self,
      CacheCommand.self, MethodsCommand.self,
      SchemaCommand.self,
    ]
  }

  /// Runs the process's command line and exits with the command's status.
  public static func main() -> Never {
    // A crash or an input truncated under its mapping (SIGBUS) still removes a run's hidden
    // output folder; a file-size limit makes writes fail with EFBIG instead of killing.
    OutputFolder.cleanUpOnFatalSignals()
    signal(SIGXFSZ, SIG_IGN)
    var arguments = Array(CommandLine.arguments.dropFirst())
    // Installed (or linked) as `mergekit-yaml`, merge is `merge run`: scripts switch by name.
    let program = CommandLine.arguments.first?.split(separator: "/").last ?? ""
    if program == "mergekit-yaml" { arguments.insert("run", at: 0) }
    let status = run(arguments, console: .standard())
    exit(status)
  }

  /// Runs `arguments` (without the program name), writing to `console`; returns the exit status.
  public static func run(_ arguments: [String], console: Console) -> Int32 {
    guard let first = arguments.first else {
      console.out(help())
      return ExitCode.success
    }
    switch first {
    case "-h", "--help":
      console.out(help())
      return ExitCode.success
    case "--version":
      console.out(version + "\n")
      return ExitCode.success
    case "help":
      guard arguments.count > 1 else {
        console.out(help())
        return ExitCode.success
      }
      guard let sub = subcommands.first(where: { $0.configuration.commandName == arguments[1] })
      else { return unknownSubcommand(arguments[1], console: console) }
      console.out(HelpFormatter.help(sub.configuration))
      return ExitCode.success
    default:
      break
    }
    guard let command = subcommands.first(where: { $0.configuration.commandName == first }) else {
      return unknownSubcommand(first, console: console)
    }
    let configuration = command.configuration
    do {
      var rest = Array(arguments.dropFirst())
      if command == RunCommand.self {
        let translated = try MergekitCommandLine.translate(rest)
        rest = translated.arguments
        for note in translated.notes { console.err(note + "\n") }
      }
      let parsed = try ArgumentParser.parse(rest, for: configuration)
      if parsed.wantsHelp {
        console.out(HelpFormatter.help(configuration))
        return ExitCode.success
      }
      let instance = try command.init(parsed)
      return instance.run(console: console)
    } catch {
      var text = "Error: \(error.message)\n"
      if let help = error.helpLine { text += "Help: \(help.trimmingLeadingSpaces)\n" }
      text += "Usage: \(HelpFormatter.usage(configuration))\n"
      text += "  See 'merge \(configuration.commandName) --help' for more information.\n"
      console.err(text)
      return ExitCode.usage
    }
  }

  /// Reports `name`, which is no subcommand, with the closest one; returns the usage status.
  private static func unknownSubcommand(_ name: String, console: Console) -> Int32 {
    var message = "Error: Unknown subcommand '\(name)'"
    if name.hasPrefix("-") { message = "Error: Unknown option '\(name)'" }
    let names = subcommands.map { $0.configuration.commandName }
    if let s = ArgumentParser.closestOption(to: name, in: names) {
      message += ". Did you mean '\(s)'?"
    }
    console.err(
      message + "\nUsage: merge <subcommand>\n  See 'merge --help' for more information.\n")
    return ExitCode.usage
  }

  static func help() -> String {
    var out = "OVERVIEW: \(abstract)\n\n"
    out += "merge reads mergekit YAML recipes, checks them completely before any weights are\n"
    out += "read, compiles them to graphs of tensor operations and runs them on all cores.\n\n"
    out += "USAGE: merge <subcommand>\n\n"
    out += "OPTIONS:\n"
    out += HelpFormatter.row("--version", "Show the version.")
    out += HelpFormatter.row("-h, --help", "Show help information.")
    out += "\nSUBCOMMANDS:\n"
    for s in subcommands {
      out += HelpFormatter.row(s.configuration.commandName, s.configuration.abstract)
    }
    out += "\n  See 'merge help <subcommand>' for detailed help.\n"
    return out
  }
}

/// A subcommand: parse, then validate (in `init`), then run.
protocol Subcommand {
  static var configuration: CommandConfiguration { get }
  init(_ arguments: ParsedArguments) throws(UsageError)
  func run(console: Console) -> Int32
}

extension String {
  var trimmingLeadingSpaces: String { String(drop(while: { $0 == " " })) }
}
