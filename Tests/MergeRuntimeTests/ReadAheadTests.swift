import MergeModel
import Testing
import _TestSupport

@testable import MergeRuntime

/// What the run reads into the page cache ahead of the tensor it computes, and in what order.
struct ReadAheadTests {
  @Test("the steps after the next are read ahead as the window holds them, each once")
  func windowOfSteps() {
    // Bytes mapped by each step; the window holds 3.
    let ahead = MergeRunner.ReadAhead(mapped: [10, 1, 1, 1, 5, 1, 1, 9, 1], window: 3)
    // Step 0 computes and maps step 1: steps 2 and 3 fit, 4 does not.
    #expect(ahead.beyond(1) == 2..<4)
    // Step 1 maps step 2: step 3 is read already, and 4 does not fit after it.
    #expect(ahead.beyond(2) == 4..<4)
    // Step 2 maps step 3: step 4, the one after it, is read though it is larger than the window.
    #expect(ahead.beyond(3) == 4..<5)
    // Step 3 maps step 4: steps 5 and 6 fit, 7 does not.
    #expect(ahead.beyond(4) == 5..<7)
    #expect(ahead.beyond(5) == 7..<7)
    #expect(ahead.beyond(6) == 7..<8)
    #expect(ahead.beyond(7) == 8..<9)
    #expect(ahead.beyond(8) == 9..<9)
  }

  @Test("inputs are read a piece of each in turn, so a pass's first blocks arrive first")
  func interleavedPieces() {
    let pieces = interleaved([100..<250, 1000..<1050, 0..<0, 5000..<5100], chunk: 50)
    let expected: [(Int, Range<Int>)] = [
      (0, 100..<150), (1, 1000..<1050), (3, 5000..<5050),
      (0, 150..<200), (3, 5050..<5100),
      (0, 200..<250),
    ]
    #expect(pieces.map(\.0) == expected.map(\.0))
    #expect(pieces.map(\.1) == expected.map(\.1))
  }

  @Test("input pages are kept while the steps around would stay within the budget")
  func releaseAllowance() {
    // Each step's working set, and the most one step holds (its working set and the next
    // one's inputs). Around step 2, steps 1 to 4 hold 8: it may keep 3.
    let release = MergeRunner.InputRelease(workingSet: [10, 1, 1, 1, 5, 1], budget: 11)
    #expect(release.allowance == [0, 0, 3, 3, 4, 5])
    // One step at a time (the small schedules): every step's pages go when it is done.
    let none = MergeRunner.InputRelease(workingSet: [0, 0, 0, 0, 0, 0], budget: 0)
    #expect(none.allowance == [0, 0, 0, 0, 0, 0])
  }

  @Test("a batch drops a file's touching or overlapping ranges in one piece")
  func coalescedRanges() {
    let ranges = MergeRunner.InputRelease.coalesced([
      30..<40, 0..<10, 10..<20, 25..<35, 50..<50, 45..<60, 58..<59,
    ])
    #expect(ranges == [0..<20, 25..<40, 45..<60])
  }

  @Test("steps' views are kept until their bytes pass the step's allowance, then all dropped")
  func batches() throws {
    let weights = try ModelFolder(path: Repository.tinyLlama + "/ft0").openWeights()
    let names = weights.tensors.map(\.name).sorted()
    let views = try names.prefix(4).map { try weights.tensor($0) }
    let sizes = views.map(\.bytes.count)
    // Steps 2 to 5 may keep the first two views, not the third.
    let allowance = sizes[0] + sizes[1]
    let release = MergeRunner.InputRelease(
      workingSet: [allowance, 0, 0, 0, 0, 0], budget: allowance)
    #expect(release.allowance == [0, 0, allowance, allowance, allowance, allowance])
    #expect(release.add([views[0]], step: 2).isEmpty)
    #expect(release.add([views[1]], step: 3).isEmpty)
    let dropped = release.add([views[2]], step: 4)
    #expect(dropped.map(\.info.name) == Array(names.prefix(3)))
    // Step 0 keeps nothing.
    #expect(release.add([views[3]], step: 0).map(\.info.name) == [names[3]])
    // A step about to map more drops what was kept first.
    let large = MergeRunner.InputRelease(workingSet: [0, 0, 0, allowance], budget: allowance)
    #expect(large.allowance == [allowance, 0, 0, 0])
    #expect(large.add([views[0]], step: 0).isEmpty)
    #expect(large.makeRoom(step: 0).isEmpty)
    #expect(large.makeRoom(step: 1).map(\.info.name) == [names[0]])
    #expect(large.makeRoom(step: 2).isEmpty)
  }
}
