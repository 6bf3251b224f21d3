import Foundation

/// The local stand-in for the Hugging Face Hub (`Tests/HubServer/hub_server.py`, Python's
/// standard library), serving folders as repositories on 127.0.0.1; stopped on deinit.
public final class HubServer: @unchecked Sendable {
  /// Whether `python3` is there to run it (tests that need it are skipped otherwise).
  public static let available: Bool = {
    let which = try? runProcess("/usr/bin/env", ["python3", "-c", "import http.server"])
    return which?.status == 0
  }()

  /// The server's process id.
  private let pid: Int32
  /// `http://127.0.0.1:PORT`.
  public let endpoint: String
  /// The token private and gated repositories accept.
  public static let token = "secret"

  /// Serves `repos` (id → folder, with `private`/`gated` flags), with `faults` (the server's
  /// `corrupt_once` and `stall_once` settings).
  ///
  /// The server is started through `sh … &`, not as a child the test process waits for:
  /// Foundation's `Process` on Linux stops reporting other children's exits while a child it
  /// launched keeps running.
  public init(
    repos: [String: (path: String, isPrivate: Bool, gated: Bool)],
    faults: [String: Any] = [:], in directory: TemporaryDirectory
  ) throws {
    var repoSpecs: [String: Any] = [:]
    for (id, r) in repos {
      repoSpecs[id] = ["path": r.path, "private": r.isPrivate, "gated": r.gated]
    }
    var config: [String: Any] = ["repos": repoSpecs, "token": Self.token]
    config.merge(faults) { _, b in b }
    let name = directory.path + "/hub-server-\(UUID().uuidString)"
    try JSONSerialization.data(withJSONObject: config).write(
      to: URL(fileURLWithPath: name + ".json"))
    let script = Repository.root + "/Tests/HubServer/hub_server.py"
    _ = try runProcess(
      "/bin/sh",
      ["-c", "python3 '\(script)' '\(name).json' > '\(name).port' 2>/dev/null < /dev/null &"])
    // The server writes "PORT PID" once it listens.
    var fields: [Substring] = []
    for _ in 0..<200 {
      if let text = try? String(contentsOfFile: name + ".port", encoding: .utf8),
        text.hasSuffix("\n")
      {
        fields = text.split(whereSeparator: \.isWhitespace)
        break
      }
      usleep(50_000)
    }
    guard fields.count == 2, let port = Int(fields[0]), let pid = Int32(fields[1]) else {
      throw CocoaError(.fileReadCorruptFile)
    }
    self.pid = pid
    endpoint = "http://127.0.0.1:\(port)"
  }

  deinit {
    kill(pid, SIGKILL)
  }

  /// The environment that points `merge` at this server, with `cache` as the hub cache.
  public func environment(cache: String, token: String? = nil) -> [String: String] {
    ["HF_ENDPOINT": endpoint, "HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "", "HF_TOKEN": token ?? ""]
  }

  /// What the server has sent so far: the bytes of response bodies, and each request.
  public func stats() throws -> (
    bodyBytes: Int, requests: [(method: String, path: String, range: String?)]
  ) {
    guard let url = URL(string: endpoint + "/_stats") else {
      throw CocoaError(.fileReadInvalidFileName)
    }
    let data = try Data(contentsOf: url)
    let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    let requests = (json["requests"] as? [[String: Any]] ?? []).map {
      (
        method: $0["method"] as? String ?? "", path: $0["path"] as? String ?? "",
        range: $0["range"] as? String
      )
    }
    return (json["body_bytes"] as? Int ?? 0, requests)
  }
}
