/// This tool's name and version, as outputs, lock files and `merge --version` give them.
public enum Tool {
  /// The version.
  public static let version = "0.1.0"
  /// `merge <version>`.
  public static var description: String { "merge \(version)" }
}
