/// Finds the closest known name to a misspelt one, for "did you mean" hints.
public enum Suggestion {
  /// The candidate closest to `name`, if one is close enough to be a likely typo.
  ///
  /// Names are compared case-insensitively with `-` and `_` treated alike, by optimal string
  /// alignment distance (a transposition costs one edit). A candidate qualifies when at most
  /// a third of the longer name's letters (and at least two) need editing.
  public static func closest(to name: String, in candidates: some Sequence<String>) -> String? {
    let key = normalized(name)
    var best: (name: String, distance: Int)?
    for candidate in candidates {
      let d = distance(key, normalized(candidate))
      let limit = max(2, max(key.count, candidate.count) / 3)
      guard d <= limit, d < (best?.distance ?? .max) else { continue }
      best = (candidate, d)
    }
    return best?.name
  }

  private static func normalized(_ s: String) -> [Character] {
    Array(s.lowercased().map { $0 == "-" ? "_" : $0 })
  }

  /// Optimal string alignment distance between two strings.
  static func distance(_ a: [Character], _ b: [Character]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev2 = [Int](repeating: 0, count: b.count + 1)
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
      cur[0] = i
      for j in 1...b.count {
        let cost = a[i - 1] == b[j - 1] ? 0 : 1
        var v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
          v = min(v, prev2[j - 2] + 1)
        }
        cur[j] = v
      }
      (prev2, prev, cur) = (prev, cur, prev2)
    }
    return prev[b.count]
  }
}
