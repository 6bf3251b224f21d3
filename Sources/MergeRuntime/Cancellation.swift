import Synchronization

/// A request to stop a run (SIGINT, SIGTERM), checked between blocks and between tensors; the
/// run then discards its output folder and throws ``RunError/interrupted(signal:)``.
public final class Cancellation: Sendable {
  private let requested = Atomic<Int32>(0)

  /// A run that nothing has asked to stop yet.
  public init() {}

  /// Asks the run to stop; `signal` is the reason (the first request is kept).
  public func cancel(signal: Int32) {
    _ = requested.compareExchange(expected: 0, desired: signal, ordering: .relaxed)
  }

  /// The signal that asked the run to stop, if one did.
  public var signal: Int32? {
    let s = requested.load(ordering: .relaxed)
    return s == 0 ? nil : s
  }
}

/// Thrown inside a run when it was asked to stop.
struct Interrupted: Error {
  var signal: Int32
}
