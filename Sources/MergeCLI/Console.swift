import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Where a command writes.
///
/// Results go to standard output, diagnostics and progress to standard error. Tests capture
/// both.
public final class Console: Sendable {
  private let sink: @Sendable (_ text: String, _ toStandardError: Bool) -> Void
  /// Whether standard error is a terminal (progress lines are drawn only then).
  public let standardErrorIsTerminal: Bool
  /// Whether diagnostics are coloured: on a terminal, unless `NO_COLOR` is set (no-color.org)
  /// or `TERM` is `dumb`.
  public let colored: Bool

  /// A console that writes to the process's standard output and error.
  public static func standard() -> Console {
    let terminal = isatty(2) == 1
    let colored = coloring(
      terminal: terminal, noColor: getenv("NO_COLOR").map { String(cString: $0) },
      term: getenv("TERM").map { String(cString: $0) })
    return Console(standardErrorIsTerminal: terminal, colored: colored) {
      text, toError in
      var bytes = Array(text.utf8)
      let fd: Int32 = toError ? 2 : 1
      bytes.withUnsafeMutableBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        var offset = 0
        while offset < buffer.count {
          let n = write(fd, base + offset, buffer.count - offset)
          if n < 0 {
            if errno == EINTR { continue }
            return
          }
          offset += n
        }
      }
    }
  }

  /// Whether diagnostics are coloured: on a terminal, unless `NO_COLOR` is set and not empty
  /// (no-color.org) or `TERM` is `dumb`.
  static func coloring(terminal: Bool, noColor: String?, term: String?) -> Bool {
    terminal && (noColor ?? "").isEmpty && term != "dumb"
  }

  /// A console that hands everything written to `sink`.
  public init(
    standardErrorIsTerminal: Bool = false, colored: Bool = false,
    sink: @escaping @Sendable (_ text: String, _ toStandardError: Bool) -> Void
  ) {
    self.sink = sink
    self.standardErrorIsTerminal = standardErrorIsTerminal
    self.colored = colored
  }

  /// Writes `text` to standard output.
  public func out(_ text: String) { sink(text, false) }
  /// Writes `text` to standard error.
  public func err(_ text: String) { sink(text, true) }
}

/// A console that records what is written, for tests.
public final class CapturingConsole: Sendable {
  private let buffers = Mutex<(out: String, err: String)>(("", ""))

  /// Creates an empty capture.
  public init() {}

  /// The console that writes into this capture.
  public var console: Console {
    Console { [self] text, toError in self.append(text, toError: toError) }
  }

  private func append(_ text: String, toError: Bool) {
    buffers.withLock { if toError { $0.err += text } else { $0.out += text } }
  }

  /// Everything written to standard output.
  public var standardOutput: String { buffers.withLock { $0.out } }
  /// Everything written to standard error.
  public var standardError: String { buffers.withLock { $0.err } }
}
