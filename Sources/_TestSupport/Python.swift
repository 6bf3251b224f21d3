import Testing

/// Python 3 on this machine, for tests that compare with Python's libraries.
public enum Python {
  /// Whether `python3` can import every one of `modules`.
  public static func canImport(_ modules: [String]) -> Bool {
    let probe = try? runProcess(
      "/usr/bin/env", ["python3", "-c", "import " + modules.joined(separator: ", ")])
    return probe?.status == 0
  }
}

extension Trait where Self == ConditionTrait {
  /// Runs the test only when Python can import `modules`; otherwise it is reported as skipped,
  /// with the reason.
  public static func requiresPython(_ modules: String...) -> Self {
    .enabled("needs python3 with \(modules.joined(separator: ", "))") {
      Python.canImport(modules)
    }
  }
}
