import Dispatch
import MergeRuntime

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// SIGINT, SIGTERM and SIGHUP turned into a ``Cancellation`` while a merge runs.
///
/// The run then stops between blocks, discards its hidden output folder and releases its lock,
/// instead of dying with them left behind. A second signal takes its default action at once.
final class InterruptSignals {
  static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
  private let sources: [any DispatchSourceSignal]

  /// Starts turning the signals into `cancellation`.
  init(cancelling cancellation: Cancellation) {
    sources = Self.signals.map { number in
      signal(number, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
      source.setEventHandler {
        cancellation.cancel(signal: number)
        signal(number, SIG_DFL)
      }
      source.resume()
      return source
    }
  }

  /// Gives the signals their default actions back.
  func restore() {
    for source in sources { source.cancel() }
    for number in Self.signals { signal(number, SIG_DFL) }
  }
}
