import MergeModel
import MergeRecipe

/// Finds the model folders a recipe names, relative to the recipe file's folder, and opens
/// each at most once.
public struct ModelResolver: Sendable {
  /// The folder relative paths are resolved against.
  public let baseDirectory: String
  private var cache: [String: Result<ModelFolder, ModelError>] = [:]

  /// Creates a resolver for a recipe in `baseDirectory`.
  public init(baseDirectory: String) {
    self.baseDirectory = baseDirectory
  }

  /// The path `reference` names on disk.
  public func path(of reference: ModelReference) -> String {
    path(of: reference.model.path.value)
  }

  /// `path` resolved against the recipe's folder (absolute paths unchanged).
  public func path(of path: String) -> String {
    if path.hasPrefix("/") { return path }
    if path.hasPrefix("~/"), let home = FileSystem.environment("HOME") {
      return FileSystem.join(home, String(path.dropFirst(2)))
    }
    if baseDirectory == "." { return path }
    return FileSystem.join(baseDirectory, path)
  }

  /// Opens the folder `reference` names, or reports why it cannot be used.
  public mutating func folder(for reference: ModelReference) -> Result<ModelFolder, ModelError> {
    let p = path(of: reference)
    if let cached = cache[p] { return cached }
    let result: Result<ModelFolder, ModelError>
    do {
      result = .success(try ModelFolder(path: p))
    } catch {
      result = .failure(error)
    }
    cache[p] = result
    return result
  }
}
