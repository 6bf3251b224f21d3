import Foundation
import Testing

/// Python 3 on this machine, for tests that compare with Python's libraries.
public enum Python {
  /// The interpreter the tests run.
  ///
  /// `$MERGE_TEST_PYTHON` when set (a virtual environment with torch and PEFT, say), or else
  /// `python3` on the PATH.
  public static var command: [String] {
    if let path = ProcessInfo.processInfo.environment["MERGE_TEST_PYTHON"], !path.isEmpty {
      return [path]
    }
    return ["python3"]
  }

  /// Runs the interpreter with `arguments`.
  public static func run(_ arguments: [String]) throws -> (
    status: Int32, stdout: String, stderr: String
  ) {
    try runProcess("/usr/bin/env", command + arguments)
  }

  /// Whether the interpreter can import every one of `modules`.
  public static func canImport(_ modules: [String]) -> Bool {
    let probe = try? run(["-c", "import " + modules.joined(separator: ", ")])
    return probe?.status == 0
  }
}

extension Trait where Self == ConditionTrait {
  /// Runs the test only when Python can import `modules`; otherwise it is reported as skipped,
  /// with the reason.
  public static func requiresPython(_ modules: String...) -> Self {
    .enabled(
      "needs python3 with \(modules.joined(separator: ", ")) (or MERGE_TEST_PYTHON naming one)"
    ) {
      Python.canImport(modules)
    }
  }
}
