/// A Hugging Face model repository id: `name` or `owner/name`, as `huggingface_hub` accepts it.
public struct HubRepositoryID: Sendable, Hashable, CustomStringConvertible {
  /// `owner/name` (or `name`).
  public let value: String

  /// The id `text` spells, or nil when it is not one: one or two parts of letters, digits,
  /// `-`, `_` and `.`, without `--` or `..`, not starting or ending with `-` or `.`, at most
  /// 96 characters (huggingface_hub's `validate_repo_id`).
  public init?(_ text: String) {
    guard !text.isEmpty, text.utf8.count <= 96, !text.contains("--"), !text.contains("..")
    else { return nil }
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count <= 2 else { return nil }
    for part in parts {
      guard let first = part.first, let last = part.last,
        part.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }),
        !"-.".contains(first), !"-.".contains(last)
      else { return nil }
    }
    value = text
  }

  public var description: String { value }

  /// The repository's folder name in the cache: `models--owner--name`.
  public var cacheFolderName: String {
    "models--" + value.split(separator: "/").joined(separator: "--")
  }
}

/// The Hugging Face hub cache, laid out as `huggingface_hub` lays it out so that Python tools
/// and `merge` share it: `models--OWNER--NAME/refs/REVISION` holds a commit id,
/// `snapshots/COMMIT/…` the files (links into `blobs/`).
public struct HubCache: Sendable, Hashable {
  /// The cache folder (`…/huggingface/hub`).
  public let path: String

  /// A cache at `path`.
  public init(path: String) {
    self.path = path
  }

  /// The cache `huggingface_hub` uses: `$HF_HUB_CACHE`, else `$HUGGINGFACE_HUB_CACHE`, else
  /// `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`
  /// (empty values count as unset).
  public static func fromEnvironment() -> HubCache {
    func variable(_ name: String) -> String? {
      FileSystem.environment(name).map(FileSystem.expandingHome)
    }
    if let hub = variable("HF_HUB_CACHE") ?? variable("HUGGINGFACE_HUB_CACHE") {
      return HubCache(path: hub)
    }
    if let home = variable("HF_HOME") { return HubCache(path: FileSystem.join(home, "hub")) }
    let cache =
      variable("XDG_CACHE_HOME") ?? FileSystem.join(variable("HOME") ?? "/", ".cache")
    return HubCache(path: FileSystem.join(FileSystem.join(cache, "huggingface"), "hub"))
  }

  /// Why a repository's snapshot is not in the cache.
  public enum Miss: Error, Sendable, Hashable, CustomStringConvertible {
    /// The cache has no folder for the repository.
    case repository(folder: String)
    /// The repository is cached, but not at this revision.
    case revision(String, known: [String], folder: String)

    public var description: String {
      switch self {
      case .repository(let folder):
        return "it is not in the Hugging Face cache (no \(folder))"
      case .revision(let revision, let known, let folder):
        let cached = known.isEmpty ? "none" : known.joined(separator: ", ")
        return
          "revision '\(revision)' is not in the Hugging Face cache at \(folder) (cached: \(cached))"
      }
    }
  }

  /// The snapshot folder of `repository` at `revision` (a branch, a tag or a commit id;
  /// `main` when nil).
  public func snapshot(of repository: HubRepositoryID, revision: String?) -> Result<
    String, Miss
  > {
    let folder = FileSystem.join(path, repository.cacheFolderName)
    guard FileSystem.kind(of: folder) == .directory else {
      return .failure(.repository(folder: folder))
    }
    let revision = revision ?? "main"
    let snapshots = FileSystem.join(folder, "snapshots")
    // A commit id names its snapshot directly; anything else is looked up in refs/.
    var commit = revision
    if !Self.isCommitID(revision) {
      // refs/NAME holds the commit; a name with `..` or a leading `/` could leave the folder.
      if revision.contains("..") || revision.hasPrefix("/") {
        return .failure(.revision(revision, known: [], folder: folder))
      }
      let ref = FileSystem.join(FileSystem.join(folder, "refs"), revision)
      guard let bytes = try? FileSystem.read(ref, limit: 256),
        let text = String(validating: bytes, as: UTF8.self)
      else {
        return .failure(.revision(revision, known: knownRevisions(folder), folder: folder))
      }
      commit = text.trimmingWhiteSpace()
    }
    let snapshot = FileSystem.join(snapshots, commit)
    guard Self.isCommitID(commit), FileSystem.kind(of: snapshot) == .directory else {
      return .failure(.revision(revision, known: knownRevisions(folder), folder: folder))
    }
    return .success(snapshot)
  }

  /// The branch and tag names and commit ids the cache holds for the repository in `folder`.
  private func knownRevisions(_ folder: String) -> [String] {
    let refs = (try? FileSystem.contents(of: FileSystem.join(folder, "refs"))) ?? []
    let commits = (try? FileSystem.contents(of: FileSystem.join(folder, "snapshots"))) ?? []
    return refs + commits.map { String($0.prefix(12)) }
  }

  /// Whether `text` is a full commit id (40 lowercase hexadecimal digits).
  public static func isCommitID(_ text: String) -> Bool {
    text.utf8.count == 40
      && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
  }
}

extension String {
  /// The text without leading and trailing white space (Python's `str.strip()`).
  public func trimmingWhiteSpace() -> String {
    var s = Substring(self)
    while let c = s.first, c.isWhitespace { s = s.dropFirst() }
    while let c = s.last, c.isWhitespace { s = s.dropLast() }
    return String(s)
  }
}
